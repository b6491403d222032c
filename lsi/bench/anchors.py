"""The anchors of ``lsi bench pipeline``: the simplest programs that read the same topic.

Each runs as a process of its own (its own core and GIL), started by the bench as
``python -m lsi.bench.anchors KIND --brokers B --topic T --result FILE …``:

- ``aiokafka``: a raw aiokafka consumer (``getmany``) that ``json.loads`` every value.
- ``faust``: a bare Faust agent that iterates the topic with ``stream.take`` and
  ``json.loads`` every value.
- ``faust-table``: the same agent (``stream.take_events``) writing one entry per event to a
  RocksDB table (``rocksdb://``, changelogged like lsi's tables).
- ``faust-relay``: a bare Faust agent that takes micro-batches as lsi's worker does (``--batch``,
  ``--within``) and sends each batch's newest record per key on to ``--out-topic``, awaiting
  the acknowledgements: Faust's own event → output hop, the floor of lsi's latency. It reads
  from the end of the topic, writes ``--ready`` once it has its partitions, and runs until
  SIGTERM.
- ``latency``: a consumer without a group that reads from the current end of a topic and,
  for each record, notes the wall-clock time at which it arrived minus a timestamp field of
  its JSON value (``ts`` of an event, ``event_ts`` of a recommendation).
- ``produce``: an aiokafka producer (``acks=all``, no linger) that offers events of a dataset
  at a fixed rate, each stamped with the wall clock as it is sent: the input of both latency
  measurements (the bare hop and lsi's event → recommendation).

The throughput kinds join consumer group ``--group`` from the earliest offset, stop once
they have handled ``--events`` records and write ``{"done": wall time, "count": n}`` to
``--result``. When the group got its partitions the bench sees from outside, the same way
for the anchors and for lsi's workers. ``latency`` writes ``--ready`` once it is positioned,
and ``{"count", "latencies"}`` when it has seen ``--events`` records (0: until SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "main"]

KINDS = ("aiokafka", "faust", "faust-table", "faust-relay", "latency", "produce")


def _write(path: Path, **result: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)  # the bench never reads half a file


async def _aiokafka(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener

    assigned: list[float] = []

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, tps: Any) -> None:
            if tps and not assigned:
                assigned.append(time.time())

    consumer = AIOKafkaConsumer(bootstrap_servers=args.brokers, group_id=args.group,
                                auto_offset_reset="earliest", enable_auto_commit=True)  # fmt: skip
    consumer.subscribe([args.topic], listener=Listener())
    await consumer.start()
    count = 0
    try:
        while count < args.events:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                count += len(records)
        done = time.time()
    finally:
        await consumer.stop()
    _write(args.result, done=done, count=count, assigned=assigned[0] if assigned else None)


def _faust(args: argparse.Namespace, table: bool) -> None:
    """A Faust app with one agent; it exits (``os._exit``) once ``--events`` are handled."""
    import faust

    from streams.app import rewind_uncommitted
    from streams.context import acting_for

    app = _faust_app(args, "earliest")
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    seen = [0]
    assigned: list[float] = []

    def finish(n: int) -> None:
        seen[0] += n
        if seen[0] >= args.events:
            _write(args.result, done=time.time(), count=seen[0],
                   assigned=assigned[0] if assigned else None)  # fmt: skip
            os._exit(0)

    async def on_assigned(sender: Any, assigned_tps: Any = (), **kwargs: Any) -> None:
        if not assigned and any(tp.topic == args.topic for tp in assigned_tps):
            assigned.append(time.time())

    async def bare(stream: Any) -> None:
        async for values in stream.take(args.batch, within=args.within):
            for value in values:
                json.loads(value)
            finish(len(values))

    async def with_table(stream: Any) -> None:
        async for batch in stream.take_events(args.batch, within=args.within):
            for event in batch:
                json.loads(event.value)
                with acting_for(event):  # as lsi's agents file a batch's table writes
                    entries[event.key] = event.value
            finish(len(batch))

    if table:
        entries = app.Table("entries", key_type=bytes, value_type=bytes,
                            partitions=args.partitions, use_partitioner=False)  # fmt: skip
    app.agent(topic, name="anchor")(with_table if table else bare)
    rewind_uncommitted(app, {args.topic})  # as lsi's worker does (streams/app.py)
    app.on_partitions_assigned.connect(on_assigned)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def _faust_app(args: argparse.Namespace, offset_reset: str) -> Any:
    """A Faust app configured as lsi's worker is where it matters for speed (acks from every
    replica, at-least-once, RocksDB stores), for consumer group ``--group``."""
    import faust

    args.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        args.group, broker=f"kafka://{args.brokers}", store="rocksdb://",
        datadir=str(args.data_dir), topic_partitions=args.partitions,
        topic_replication_factor=1, web_enabled=False, consumer_auto_offset_reset=offset_reset,
        producer_acks=-1, processing_guarantee="at_least_once", table_standby_replicas=0,
        autodiscover=False,
    )  # fmt: skip


def _faust_relay(args: argparse.Namespace) -> None:
    import faust

    app = _faust_app(args, "latest")
    source = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    out = app.topic(args.out_topic, key_serializer="raw", value_serializer="raw")

    async def on_assigned(sender: Any, assigned: Any = (), **kwargs: Any) -> None:
        if any(tp.topic == args.topic for tp in assigned):
            args.ready.write_text("ready\n")

    async def relay(stream: Any) -> None:
        async for batch in stream.take_events(args.batch, within=args.within):
            newest = {event.key: event.value for event in batch}
            sent = [await out.send(key=key, value=value) for key, value in newest.items()]
            await asyncio.gather(*sent)  # the acknowledgements, as lsi's delivery awaits them

    app.agent(source, name="relay")(relay)
    app.on_partitions_assigned.connect(on_assigned)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


async def _latency(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=args.brokers, group_id=None,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while args.topic not in await consumer.topics():  # a topic just created
            if time.monotonic() > deadline:
                raise SystemExit(f"no topic {args.topic}")
            await asyncio.sleep(0.2)
        tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before the bench starts producing
            await consumer.position(tp)
        args.ready.write_text("ready\n")
        while not stop.is_set() and (args.events <= 0 or len(latencies) < args.events):
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()  # when the records arrived; decoding them is not the hop's
            for records in batches.values():
                for record in records:
                    stamp = json.loads(record.value).get(args.field)
                    if isinstance(stamp, int | float):
                        latencies.append(now - float(stamp))
    finally:
        await consumer.stop()
    _write(args.result, count=len(latencies), latencies=latencies)


async def _produce(args: argparse.Namespace) -> None:
    """``--events`` events of ``--dataset`` from ``--start`` at ``--rate`` events/s, each
    stamped with the wall clock (``ts``) as it is handed to the producer."""
    import dataclasses

    from aiokafka import AIOKafkaProducer

    from lsi.evaluation.datasets import load
    from lsi.kafka.producer import events_of

    events = [e for e, _ in events_of(load(args.dataset), args.run_id, args.events, args.start)]
    producer = AIOKafkaProducer(bootstrap_servers=args.brokers, acks="all", linger_ms=0)
    await producer.start()
    t0 = time.time()
    try:
        for i, event in enumerate(events):
            delay = t0 + i / args.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            stamped = dataclasses.replace(event, ts=time.time())
            await producer.send(args.topic, stamped.to_json(), key=event.user_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    _write(args.result, sent=len(events), seconds=time.time() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsi.bench.anchors")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--result", type=Path, required=True, help="where the JSON result goes")
    parser.add_argument("--group", help="consumer group (the throughput kinds)")
    parser.add_argument("--events", type=int, default=0, help="records to handle, then stop")
    parser.add_argument("--partitions", type=int, default=8, help="Faust: the topic's")
    parser.add_argument("--data-dir", type=Path, help="Faust: its RocksDB folder")
    parser.add_argument("--batch", type=int, default=500, help="Faust: most events per take")
    parser.add_argument("--within", type=float, default=0.05, help="Faust: take's wait, s")
    parser.add_argument("--field", default="ts", help="latency: the JSON timestamp field")
    parser.add_argument("--ready", type=Path,
                        help="latency, faust-relay: written once it is positioned")  # fmt: skip
    parser.add_argument("--out-topic", help="faust-relay: where each batch goes on")
    parser.add_argument("--dataset", help="produce: the events' dataset")
    parser.add_argument(
        "--start", type=int, default=0, help="produce: from this event (time order)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="produce: events/s")
    parser.add_argument("--run-id", default="live", help="produce: part of each event_id")
    parser.add_argument("--parent-pid", type=int, help="exit when this process exits")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        from lsi.serving.worker_process import die_with_parent

        if not die_with_parent(args.parent_pid):
            return 1
    if args.kind in ("aiokafka", "faust", "faust-table") and (not args.group or args.events <= 0):
        parser.error(f"{args.kind} needs --group and --events")
    if args.kind == "aiokafka":
        asyncio.run(_aiokafka(args))
    elif args.kind == "produce":
        if not args.dataset or args.events <= 0 or args.rate <= 0:
            parser.error("produce needs --dataset, --events and --rate")
        asyncio.run(_produce(args))
    elif args.kind == "latency":
        if args.ready is None:
            parser.error("latency needs --ready")
        asyncio.run(_latency(args))
    elif args.kind == "faust-relay":
        if not (args.group and args.out_topic and args.ready and args.data_dir):
            parser.error("faust-relay needs --group, --out-topic, --ready and --data-dir")
        _faust_relay(args)
    else:
        if args.data_dir is None:
            parser.error(f"{args.kind} needs --data-dir")
        _faust(args, table=args.kind == "faust-table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
