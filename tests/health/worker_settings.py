"""Settings for the worker processes of test_workers: the test's database, Redis as the cache."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import SMTPRELAY

DATABASES = {"default": json.loads(os.environ["SMTPRELAY_HEALTH_WORKER_DB"])}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "health": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["SMTPRELAY_HEALTH_WORKER_REDIS"],
    },
}
SMTPRELAY = {**SMTPRELAY, "CACHE_ALIAS": "health"}
