"""A fixed-window counter in Django's cache: shared by every worker when the cache is shared
(Redis), per process with the default in-memory cache."""

from __future__ import annotations

import time

from django.core.cache import cache


def allow(key: str, limit: int, window: int) -> bool:
    """Count one event for `key`; False once `limit` events fell in this `window` seconds."""
    bucket = f"ratelimit:{key}:{int(time.time()) // window}"
    if cache.add(bucket, 1, timeout=window + 1):
        return True
    try:
        return cache.incr(bucket) <= limit
    except ValueError:  # expired between add and incr
        cache.add(bucket, 1, timeout=window + 1)
        return True
