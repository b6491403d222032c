"""The Python client of lsi: publish click events, read recommendations.

:class:`EventProducer` sends events to the events topic as the workers expect them (the JSON
of :class:`~lsi.wire.records.Event`, key = ``user_id`` in UTF-8, the user's murmur2
partition) after checking each one with the workers' own rules
(:func:`lsi.wire.validation.validate_event`). :class:`RecommendationsClient` asks a worker
over HTTP (``GET /recommendations/{user_id}/?n=…&exclude=…`` and
``GET /items/{item_id}/similar/``, retrying while the worker cannot answer yet) and follows
the recommendations topic. It hands out typed records
(:class:`~lsi.wire.records.Recommendation`, and :class:`lsi.client.http.SimilarItems` for
similar items). Nothing connects at import, and the Kafka client is loaded only by what uses
Kafka.

Errors, beside :class:`~lsi.errors.InvalidEvent` (an event the workers would dead-letter,
raised before anything is sent) and :class:`~lsi.errors.BrokerError` (Kafka cannot be
reached)::

    LsiError
    └── ClientError             a call of this client failed; ``str(exc)`` says what and where
        ├── WorkerUnavailable   503, or no connection, until ``retry_for_s`` ran out
        ├── RequestRejected     the worker (400) or the client refused the request
        └── DeliveryFailed      ``flush``: events the broker did not acknowledge
"""

from lsi.client.http import RecommendationsClient, SimilarItems
from lsi.client.producer import EventProducer
from lsi.errors import ClientError, DeliveryFailed, RequestRejected, WorkerUnavailable
from lsi.wire.records import parse_recommendation

__all__ = [
    "ClientError",
    "DeliveryFailed",
    "EventProducer",
    "RecommendationsClient",
    "RequestRejected",
    "SimilarItems",
    "WorkerUnavailable",
    "parse_recommendation",
]
