"""A fixed-window counter in Django's cache: shared by every worker when the cache is shared
(Redis), per process with the default in-memory cache."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


def allow(key: str, limit: int, window: int) -> bool:
    """Count one event for `key`; False once `limit` events fell in this `window` seconds.

    Open when the cache cannot be reached (Redis restarting): a learner reconnecting then
    is let in rather than shown an error; sandboxd still limits sandbox starts itself.
    """
    bucket = f"ratelimit:{key}:{int(time.time()) // window}"
    try:
        if cache.add(bucket, 1, timeout=window + 1):
            return True
        try:
            return cache.incr(bucket) <= limit
        except ValueError:  # expired between add and incr
            cache.add(bucket, 1, timeout=window + 1)
            return True
    except Exception as exc:  # noqa: BLE001 (whatever the cache backend raises)
        log.warning("rate limit %s not counted, the cache is unavailable: %s", key, exc)
        return True
