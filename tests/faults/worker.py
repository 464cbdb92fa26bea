"""One delivery worker for the fault suite: ``python -m tests.faults.worker``.

It runs the product's own ``smtprelay_send`` command against the test
database (``worker_settings``) and prints one JSON line: the command's summary,
or the error that ended it. The test kills it, cuts its database connection,
or lets it finish.
"""

from __future__ import annotations

import io
import json
import os
import sys

if __name__ == "__main__":
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.faults.worker_settings"
    import django

    django.setup()
    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command("smtprelay_send", stdout=out)
    except Exception as exc:  # reported to the test, which decides what is acceptable
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(3)
    print(json.dumps({"summary": out.getvalue().strip()}), flush=True)
