"""lsi: a streaming recommender fusing long-term and short-term user interest.

The core library: wire records and their validation, per-user state, item statistics,
scoring, the batch engine the Faust agents run, configuration and metrics. The Faust app
lives in :mod:`streams`, the models in :mod:`models`.
"""

from lsi.config import Settings
from lsi.core.engine import BatchResult, EngineConfig, process_batch
from lsi.core.state import StateConfig, UserState
from lsi.errors import BrokerError, ConfigError, DatasetError, InvalidEvent, LsiError
from lsi.wire.records import EVENT_TYPES, Event, RecItem, Recommendation, ScoredItem
from lsi.wire.validation import Limits, validate_event

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "BatchResult",
    "BrokerError",
    "ConfigError",
    "DatasetError",
    "EngineConfig",
    "Event",
    "InvalidEvent",
    "Limits",
    "LsiError",
    "RecItem",
    "Recommendation",
    "ScoredItem",
    "Settings",
    "StateConfig",
    "UserState",
    "__version__",
    "process_batch",
    "validate_event",
]
