"""Celery task: refresh the DNS status of every sending domain.

Beat schedule (add to the site's settings; DNS changes slowly, and each run
queries every domain's records, so a few times a day is enough)::

    CELERY_BEAT_SCHEDULE = {
        "smtprelay-refresh-domains": {
            "task": "django_smtprelay.refresh_domains",
            "schedule": 6 * 60 * 60,  # every 6 hours
        },
    }
"""

from __future__ import annotations

from celery import shared_task

from .refresh import refresh_domains as _refresh


@shared_task(name="django_smtprelay.refresh_domains", ignore_result=True)
def refresh_domains() -> dict[str, int]:
    """Check every SenderDomain and save the results; returns a count per verdict."""
    return _refresh()
