"""The benchmark's Celery app: configured from Django settings, as a site's would be.

When the worker is ready it creates ``BENCH_READY_FILE`` so the benchmark
starts the clock only once the worker consumes.
"""

import os
from pathlib import Path
from typing import Any

import django
from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

app = Celery("smtprelay_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_smtprelay"])


@worker_ready.connect
def _ready(**kwargs: Any) -> None:
    ready = os.environ.get("BENCH_READY_FILE")
    if ready:
        Path(ready).touch()
