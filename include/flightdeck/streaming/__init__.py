"""Streaming inference: the stream scorer and its broker adapters (Redis Streams, Kafka, SQL sink)."""
