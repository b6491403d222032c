"""Wire formats: the typed records of every topic, their validation at the boundary, Kafka's
default partitioner (which partition a key lands on) and the JSON Schemas (package data,
``lsi/wire/schemas``).

Standard library and orjson only: producers, the CLI and every agent validate with the same
rules.
"""
