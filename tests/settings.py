"""Settings for the test suite.

``SMTPRELAY_TEST_DATABASE`` = ``postgres`` runs it on PostgreSQL
(``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE``, default 127.0.0.1:5432/test);
``SMTPRELAY_TEST_BROKER`` = a broker URL (``redis://127.0.0.1:6379/15``) runs
the Celery tests through that broker instead of the in-memory one.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The live server of the browser tests serves the admin's CSS and scripts.
    "django.contrib.staticfiles",
    "django_smtprelay",
]
STATIC_URL = "/static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("SMTPRELAY_TEST_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "NAME": os.environ.get("PGDATABASE", "test"),
            "TEST": {"NAME": os.environ.get("SMTPRELAY_TEST_PGNAME", "test_smtprelay")},
        }
    }
else:
    # A file, not :memory:, so worker threads and processes share the test database.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "test.sqlite3"),
            "TEST": {"NAME": str(BASE_DIR / f"test-{os.getpid()}.sqlite3")},
            "OPTIONS": {"timeout": 30},
        }
    }

# A second connection to the test database, for a site whose router keeps the
# relay's tables in a database of their own (tests/test_backend.py routes them
# there; no other test uses it).
DATABASES["relay"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}

EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = 1  # nothing listens; tests that deliver configure a route or override this
EMAIL_TIMEOUT = 5

CELERY_BROKER_URL = os.environ.get("SMTPRELAY_TEST_BROKER", "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False

SMTPRELAY = {
    "PUBLISH_ON_COMMIT": False,
    "RETRY_JITTER": 0,
    # No DNS query leaves the machine: a loopback port where nothing answers.
    # Tests that need answers start tests/dnsserver.py and point this at it.
    "DNS_NAMESERVERS": ["127.0.0.1:9"],
    "DESTINATION_MX_TIMEOUT": 0.5,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_smtprelay": {"handlers": ["null"], "level": "DEBUG"}},
}
