"""``lsi kafka``: run a local single-node Kafka broker (up, down, status, logs)."""

from __future__ import annotations

import argparse

from lsi.cli.common import at_least


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kafka", help="run a local single-node Kafka broker (KRaft)")
    k.add_argument("action", choices=["up", "down", "status", "logs"])
    k.add_argument("--lines", type=at_least(0), default=50, help="log lines to show (logs)")
    k.set_defaults(func=cmd_kafka)


def cmd_kafka(args: argparse.Namespace) -> int:
    from lsi.kafka.broker import BrokerSettings, KafkaBroker

    broker = KafkaBroker(BrokerSettings.from_env())
    if args.action == "up":
        st = broker.up()
        print(f"Kafka {st.version} is up at {st.bootstrap} (pid {st.pid}, data {st.data_dir})")
    elif args.action == "down":
        stopped = broker.down()
        print("Kafka stopped" if stopped else "Kafka was not running")
    elif args.action == "status":
        st = broker.status()
        state = "running" if st.running else "stopped"
        answer = ", answering" if st.answering else (", not answering" if st.running else "")
        print(f"Kafka {st.version}: {state}{answer} at {st.bootstrap} (pid {st.pid}); "
              f"log {st.log_file}")  # fmt: skip
        return 0 if st.running and st.answering else 1
    elif args.action == "logs":
        for line in broker.tail_logs(args.lines):
            print(line)
    return 0
