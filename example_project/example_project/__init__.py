"""The example site. Loading the Celery app here makes ``shared_task`` publish through it."""

from .celery import app as celery_app

__all__ = ["celery_app"]
