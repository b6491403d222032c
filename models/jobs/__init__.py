"""The refresh job: read the interaction log, train, validate, publish, announce. The only part of
:mod:`models` that talks to Kafka and serves metrics.
"""
