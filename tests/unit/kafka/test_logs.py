"""Repeated log records are held back and counted (:mod:`lsi.kafka.logs`), on a fake clock."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import pytest

from lsi.kafka.logs import RepeatFilter, quiet_repeats


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Keeps every formatted line it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {self.format(record)}")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own (unique name), not propagating, level DEBUG, with a :class:`Lines`."""
    log = logging.getLogger(f"test-logs-{uuid.uuid4().hex[:8]}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(Lines())
    yield log
    log.handlers.clear()
    log.filters.clear()


def lines(log: logging.Logger) -> list[str]:
    handler = log.handlers[0]
    assert isinstance(handler, Lines)
    return handler.lines


def connect_failed(log: logging.Logger, port: int = 9092) -> None:
    log.error("Unable connect to node with id %s: %s", 1, f"Connect call failed {port}")


def test_the_first_record_passes_and_repeats_wait_for_the_window(logger: logging.Logger) -> None:
    clock = Clock()
    logger.addFilter(RepeatFilter(10.0, clock=clock))
    for n in range(500):  # 100 a second, for 5 s
        clock.now = 1000.0 + n / 100
        connect_failed(logger)
    assert lines(logger) == ["ERROR Unable connect to node with id 1: Connect call failed 9092"]

    clock.now = 1010.0  # the window closes: the next one passes, with the count
    connect_failed(logger, port=9093)
    assert lines(logger)[1] == ("ERROR Unable connect to node with id 1: Connect call failed "
                                "9093 [repeated 499 times in the last 10 s]")  # fmt: skip


def test_one_line_per_window_and_template_while_the_repeats_go_on(logger: logging.Logger) -> None:
    clock = Clock()
    logger.addFilter(RepeatFilter(10.0, clock=clock))
    for n in range(6000):  # 60 s at 100 records a second of each of two templates
        clock.now = 1000.0 + n / 100
        connect_failed(logger)
        logger.error("Unable to update metadata from %s", [1])
    shown = lines(logger)
    assert len(shown) == 2 * 6  # windows open at 0, 10, 20, 30, 40, 50 s
    assert shown[0].startswith("ERROR Unable connect") and shown[1].startswith("ERROR Unable to")
    repeats = [line for line in shown if "[repeated 999 times in the last 10 s]" in line]
    assert len(repeats) == 10, shown


def test_templates_levels_and_loggers_are_counted_apart(logger: logging.Logger) -> None:
    clock = Clock()
    repeat = RepeatFilter(10.0, clock=clock)
    other = logging.getLogger(logger.name + ".child")
    other.addHandler(Lines())
    other.propagate = False
    try:
        logger.addFilter(repeat)
        other.addFilter(repeat)
        for _ in range(3):
            connect_failed(logger)
            connect_failed(other)
            logger.warning("Unable connect to node with id %s: %s", 1, "refused")
            logger.error("Heartbeat failed")
        assert lines(logger) == [
            "ERROR Unable connect to node with id 1: Connect call failed 9092",
            "WARNING Unable connect to node with id 1: refused",
            "ERROR Heartbeat failed",
        ]
        assert lines(other) == ["ERROR Unable connect to node with id 1: Connect call failed 9092"]
    finally:
        other.handlers.clear()
        other.filters.clear()


def test_a_template_seen_again_after_a_quiet_window_has_no_count(logger: logging.Logger) -> None:
    clock = Clock()
    logger.addFilter(RepeatFilter(10.0, clock=clock))
    connect_failed(logger)
    clock.now += 60
    connect_failed(logger)
    assert lines(logger) == ["ERROR Unable connect to node with id 1: Connect call failed 9092"] * 2


def test_debug_records_are_never_held_back(logger: logging.Logger) -> None:
    logger.addFilter(RepeatFilter(10.0, clock=Clock()))
    for n in range(5):
        logger.debug("Sending request %s", n)
    assert len(lines(logger)) == 5


def test_the_count_survives_percent_signs_and_odd_messages(logger: logging.Logger) -> None:
    clock = Clock()
    logger.addFilter(RepeatFilter(1.0, clock=clock))
    for _ in range(3):
        logger.error("disk %d%% full", 99)
        logger.error(ValueError("not a string"))
    clock.now += 1
    logger.error("disk %d%% full", 99)
    logger.error(ValueError("not a string"))
    assert lines(logger)[2:] == ["ERROR disk 99% full [repeated 2 times in the last 1 s]",
                                 "ERROR not a string [repeated 2 times in the last 1 s]"]  # fmt: skip


def test_closed_windows_are_forgotten_past_the_limit(logger: logging.Logger) -> None:
    clock = Clock()
    repeat = RepeatFilter(10.0, clock=clock, max_templates=4)
    logger.addFilter(repeat)
    for n in range(4):
        logger.error(f"message {n}")
    clock.now += 10
    logger.error("message 4")  # the fifth template: the four closed windows go
    assert len(repeat._windows) == 1


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RepeatFilter(0.0)


def test_the_filter_counts_every_record_of_many_threads(logger: logging.Logger) -> None:
    clock = Clock()
    logger.addFilter(RepeatFilter(10.0, clock=clock))

    def spam() -> None:
        for _ in range(1000):
            connect_failed(logger)

    threads = [threading.Thread(target=spam) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    clock.now += 10
    connect_failed(logger)
    assert lines(logger)[-1].endswith("[repeated 3999 times in the last 10 s]")
    assert len(lines(logger)) == 2


def test_quiet_repeats_covers_every_logger_of_the_trees_once() -> None:
    prefix = f"fakeclient{uuid.uuid4().hex[:6]}"
    names = [prefix, f"{prefix}.conn", f"{prefix}.consumer.group_coordinator"]
    for name in names[1:]:
        logging.getLogger(name)
    unrelated = logging.getLogger(prefix + "x.conn")  # a name that only starts the same
    try:
        first = quiet_repeats([prefix])
        again = quiet_repeats([prefix])
        for name in names:
            assert logging.getLogger(name).filters == [first]
        assert again is not first and unrelated.filters == []
    finally:
        for name in names:
            logging.getLogger(name).filters.clear()


def test_the_loggers_that_flooded_are_covered() -> None:
    """aiokafka's client logs on ``aiokafka`` itself, its coordinator on a child logger."""
    import aiokafka.consumer.group_coordinator  # noqa: F401  (imported by Faust in a worker)

    flooded = [logging.getLogger(n) for n in ("aiokafka", "aiokafka.consumer.group_coordinator")]
    repeat = quiet_repeats()
    try:
        for log in flooded:
            assert repeat in log.filters
    finally:
        for log in flooded:
            log.removeFilter(repeat)
