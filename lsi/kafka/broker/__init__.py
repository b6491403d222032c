"""A local single-node Apache Kafka broker (KRaft) for development, tests and demos.

Java 17+ runs it; Maven resolves its jars once into ``~/.cache/lsi``::

    from lsi.kafka.broker import BrokerSettings, KafkaBroker

    broker = KafkaBroker(BrokerSettings.from_env())
    status = broker.up()          # idempotent; waits until the broker answers
    print(status.bootstrap)       # 127.0.0.1:9092
    broker.down()

Kafka's own command-line tools of the same release run with its jars and Java:
:func:`lsi.kafka.broker.tools.run_tool` (``lsi kafka tool NAME ARGS…``).
"""

from lsi.kafka.broker.manager import BrokerStatus, KafkaBroker
from lsi.kafka.broker.settings import BrokerSettings

__all__ = ["BrokerSettings", "BrokerStatus", "KafkaBroker"]
