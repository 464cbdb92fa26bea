"""The test settings for ``smtprelay_serve`` run in a subprocess: ``SMTPRELAY``
keys come as JSON in ``SMTPRELAY_TEST_SUBMISSION``, and the test database
(``SMTPRELAY_TEST_DB_NAME``) is the one the test wrote its accounts to."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, SMTPRELAY

SMTPRELAY = {**SMTPRELAY, **json.loads(os.environ.get("SMTPRELAY_TEST_SUBMISSION") or "{}")}
if os.environ.get("SMTPRELAY_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["SMTPRELAY_TEST_DB_NAME"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_smtprelay": {"handlers": ["stderr"], "level": "INFO"}},
}
