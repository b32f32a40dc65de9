"""The per-learner rate limit: counted in Django's cache, open when the cache is down."""

from __future__ import annotations

import logging

from sandboxapp.ratelimit import allow


def test_the_limit_refuses_past_its_count_in_one_window(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    answers = [allow("learner-a", limit=3, window=60) for _ in range(5)]
    assert answers == [True, True, True, False, False]
    assert allow("learner-b", limit=3, window=60)  # another learner has their own count


def test_an_unreachable_cache_lets_the_learner_in_and_says_so(settings, caplog):
    # Redis restarting: nothing listens on this port.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with caplog.at_level(logging.WARNING, logger="sandboxapp.ratelimit"):
        assert allow("learner-a", limit=1, window=60)
    assert "the cache is unavailable" in caplog.text
