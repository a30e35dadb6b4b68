"""Response cache keyed by (model version, canonical input): in process, or shared in Redis.

Scores are deterministic for a version and an input, so a hit is exact. The cache never
fails a request: a Redis error counts as a miss and is logged once per outage.
"""

from __future__ import annotations

import logging

import numpy as np
from cachetools import TTLCache

from flightdeck.config import Settings

log = logging.getLogger(__name__)


def cache_key(model_key: str, input_digest: str) -> str:
    return f"flightdeck:score:{model_key}:{input_digest}"


class MemoryCache:
    """A per-worker LRU with a time-to-live."""

    backend = "memory"

    def __init__(self, size: int, ttl_seconds: float) -> None:
        self._entries: TTLCache = TTLCache(maxsize=size, ttl=ttl_seconds)

    async def get(self, key: str) -> np.ndarray | None:
        return self._entries.get(key)

    async def set(self, key: str, scores: np.ndarray) -> None:
        self._entries[key] = scores

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Shared by every worker and replica; values are the float64 scores' bytes."""

    backend = "redis"

    def __init__(self, url: str, ttl_seconds: int) -> None:
        import redis.asyncio as redis  # optional backend: import only when chosen

        self._client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.2)
        self._ttl = ttl_seconds
        self._healthy = True
        self._errors = (redis.RedisError, OSError)

    async def get(self, key: str) -> np.ndarray | None:
        try:
            value = await self._client.get(key)
        except self._errors as exc:
            self._down(exc)
            return None
        self._healthy = True
        return None if value is None else np.frombuffer(value, dtype=np.float64)

    async def set(self, key: str, scores: np.ndarray) -> None:
        try:
            await self._client.set(key, np.ascontiguousarray(scores, dtype=np.float64).tobytes(), ex=self._ttl)
        except self._errors as exc:
            self._down(exc)

    def _down(self, exc: Exception) -> None:
        if self._healthy:
            log.warning("response cache (Redis) unavailable, serving without it: %s", exc)
        self._healthy = False

    async def close(self) -> None:
        await self._client.aclose()


def make_cache(settings: Settings) -> MemoryCache | RedisCache | None:
    """The cache the settings ask for, or None when caching is off."""
    if settings.cache_backend == "off":
        return None
    if settings.cache_backend == "redis":
        return RedisCache(settings.redis_url, settings.cache_ttl_seconds)
    return MemoryCache(settings.cache_size, settings.cache_ttl_seconds)
