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


class ClientError(LsiError):
    """A call of the Python client (:mod:`lsi.client`) failed."""


class WorkerUnavailable(ClientError):
    """The worker answered 503 (or could not be reached) until the retry deadline passed.

    Attributes:
        url: the URL asked.
        message: the worker's ``error`` message, or the connection error.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url, self.message = url, message


class RequestRejected(ClientError):
    """The worker refused the request (``status`` 400 …) or, with ``status`` ``None``, the
    client did, by the rule the worker applies (a user id no event could carry)."""

    def __init__(self, url: str, status: int | None, message: str) -> None:
        super().__init__(f"{url}: {status or 'not sent'}: {message}")
        self.url, self.status, self.message = url, status, message


class DeliveryFailed(ClientError):
    """Events the broker did not acknowledge (``failed``), or did not acknowledge in time
    (``pending``). ``errors``: ``(event_id, exception)`` of the failed ones."""

    def __init__(self, topic: str, errors: list[tuple[str, BaseException]], pending: int) -> None:
        parts = [f"{len(errors)} event(s) were not delivered"] if errors else []
        if pending:
            parts.append(f"{pending} event(s) not yet acknowledged when flush timed out")
        first = f" (first: {errors[0][0]}: {errors[0][1]!r})" if errors else ""
        super().__init__(f"{topic}: {' and '.join(parts)}{first}")
        self.topic, self.errors, self.pending = topic, errors, pending

    @property
    def failed(self) -> int:
        return len(self.errors)
