"""The exception tree of lsi.

Every error lsi raises on purpose derives from :class:`LsiError`, so callers (the CLI above
all) can catch one type and print a message instead of a traceback::

    LsiError                    root; ``str(exc)`` is a message for a person
    ├── ConfigError             bad or unknown setting (names the key and what was expected)
    ├── BrokerError             the local Kafka broker cannot be resolved, started or reached
    ├── DatasetError            a dataset is missing or malformed
    ├── TooLittleData           too few interactions to train a part of a model yet
    └── InvalidRecord           a record failed validation; carries a stable ``reason`` code
        └── InvalidEvent        ... an event (``lsi.events``, ``lsi.interactions``)

:class:`InvalidRecord` is control flow, not a crash: the agents turn it into a dead-letter
record whose headers carry ``reason`` and ``detail``.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigError",
    "DatasetError",
    "InvalidEvent",
    "InvalidRecord",
    "LsiError",
    "TooLittleData",
]


class LsiError(Exception):
    """Root of every error lsi raises deliberately."""


class ConfigError(LsiError):
    """A setting is unknown, missing or of the wrong type."""


class BrokerError(LsiError):
    """The local Kafka broker cannot be resolved, started, stopped or reached."""


class DatasetError(LsiError):
    """A dataset is missing, unreadable or does not have the expected columns."""


class InvalidRecord(LsiError):
    """A record read from a topic failed validation.

    Attributes:
        reason: a stable, machine-readable code (``malformed_json``, ``missing_field`` …)
            used as the ``lsi-dlq-reason`` header and the ``reason`` metric label.
        detail: a sentence for a person: what was expected and what arrived.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEvent(InvalidRecord):
    """An event failed validation (see :mod:`lsi.wire.validation` for the reason codes)."""


class TooLittleData(LsiError):
    """Too few interactions to train a part of a model yet; the message says what is missing.
    The refresh job then publishes what it could train (the long-term model) and says so."""
