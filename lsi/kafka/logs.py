"""Keep a lost broker from flooding the logs: repeated records are summarised.

A Kafka client whose broker is gone retries every connection about ten times a second and
logs every failure (aiokafka: ``Unable connect to node with id 1: …``, ``Unable to update
metadata from [1]``, ``Group Coordinator Request failed: …``; kafka-python likewise), so a
worker without its broker wrote thousands of lines a second. :class:`RepeatFilter` lets the
first record of each *template* through (the message before its ``%`` arguments are put in,
per logger and level), drops the repeats for ``window_s`` seconds and adds their count to
the first one after the window::

    [ERROR] Unable connect to node with id 1: [Errno 111] Connect call failed …
    [ERROR] Unable connect to node with id 1: [Errno 111] Connect call failed … [repeated 97 times in the last 10 s]

so the log still says, every ``window_s``, what is wrong and how often. :func:`quiet_repeats`
installs one filter on the Kafka, Faust and mode loggers (the worker and ``lsi refresh
--every`` call it once their clients' modules are imported).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["CLIENT_LOGGERS", "RepeatFilter", "quiet_repeats"]

#: the logger trees of the Kafka clients and of the stream framework
CLIENT_LOGGERS = ("aiokafka", "kafka", "faust", "mode")


@dataclass(slots=True)
class _Window:
    """One template's current window: when its last shown record passed, repeats since."""

    opened: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Pass the first record of each (logger, level, template) per window; count the rest.

    A record of a template seen less than ``window_s`` seconds ago (by ``clock``) is dropped
    and counted. The first one after the window passes, with ``[repeated N times in the last
    S s]`` appended when N > 0, and opens the next window. Records below ``min_level`` always
    pass (who asks for debug output gets all of it). Thread-safe: kafka-python logs from its
    heartbeat thread too.

    Args:
        window_s: how long repeats of one template are held back (seconds, > 0).
        min_level: the lowest level that is rate-limited.
        clock: seconds, monotonic (tests pass a fake one).
        max_templates: templates remembered at most; past it, closed windows are forgotten.
    """

    def __init__(
        self,
        window_s: float = 10.0,
        *,
        min_level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
        max_templates: int = 1024,
    ) -> None:
        super().__init__()
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self.min_level = min_level
        self._clock = clock
        self._max = max_templates
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` drops ``record``; a record that passes may carry the repeat count."""
        if record.levelno < self.min_level:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.opened < self.window_s:
                window.suppressed += 1
                return False
            self._windows[key] = _Window(now)
            if len(self._windows) > self._max:
                self._forget(now)
        if window is not None and window.suppressed:  # formatted outside the lock
            _append(record, f" [repeated {window.suppressed} times in the last "
                            f"{now - window.opened:.0f} s]")  # fmt: skip
        return True

    def _forget(self, now: float) -> None:
        """Drop the windows that have closed (their uncounted repeats with them)."""
        for key in [k for k, w in self._windows.items() if now - w.opened >= self.window_s]:
            del self._windows[key]


def _append(record: logging.LogRecord, suffix: str) -> None:
    """Put ``suffix`` after the record's message (formatted now, as the handler would)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself, leave it be
        return
    # an empty tuple, not None: formatters (mode's) wrap a lone non-tuple argument in one
    record.msg, record.args = message + suffix, ()


def quiet_repeats(prefixes: Iterable[str] = CLIENT_LOGGERS, window_s: float = 10.0) -> RepeatFilter:
    """Install one :class:`RepeatFilter` on every logger named ``prefix`` or ``prefix.…``.

    A filter of a logger sees only the records logged on that very logger (not its
    children's), so it goes on each one that exists now: call this after the clients'
    modules are imported (they create their loggers at import). Loggers that already carry
    a :class:`RepeatFilter` keep theirs, so a second call adds nothing twice.

    Returns:
        the filter installed.
    """
    wanted = tuple(prefixes)
    repeat = RepeatFilter(window_s)
    names = set(wanted) | {
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name.startswith(prefix + ".") for prefix in wanted)
    }
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(repeat)
    return repeat
