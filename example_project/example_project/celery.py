"""The site's Celery app, configured from Django settings (keys prefixed ``CELERY_``).

Run a worker, with the periodic sweep in the same process::

    celery -A example_project worker -B --pool=solo
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
