"""The suite's Celery app, configured from Django settings like a site's would be."""

from celery import Celery

app = Celery("smtprelay_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_smtprelay"])
