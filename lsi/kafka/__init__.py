"""Kafka: the clients the tools use, their security settings, the local broker
(:mod:`lsi.kafka.broker`), the dataset producer and quiet client logs.
"""
