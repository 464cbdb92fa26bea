"""Django settings for the benchmark; every knob comes from the environment.

``bench/run.py`` sets these for each child process:

- ``BENCH_DATABASE``: ``sqlite:/path/file.sqlite3`` or ``postgres:dbname``
  (``BENCH_PG_HOST``/``BENCH_PG_PORT``/``BENCH_PG_USER``, default 127.0.0.1:5432/postgres).
- ``BENCH_SUBJECT``: ``smtprelay``, ``post_office`` or ``mailer``: the queue under test.
- ``BENCH_SMTP_PORT``: the smtp-sink port on 127.0.0.1.
- ``BENCH_BROKER`` and ``BENCH_QUEUE``: the Celery broker and queue name.
- ``BENCH_BATCH_SIZE``: ``SMTPRELAY["BATCH_SIZE"]`` (claim size; the app's default if unset).
- ``BENCH_PUBLISH``: ``1`` makes the backend publish Celery tasks on commit.
- ``BENCH_WORKDIR``: where lock files go.
- ``BENCH_CONN_MAX_AGE``: Django's ``CONN_MAX_AGE`` (default 0; the webhook step sets 60).
- ``BENCH_SQLITE_SYNCHRONOUS``: SQLite's ``synchronous`` pragma (default: SQLite's, FULL).
- ``BENCH_SUBMISSION``: ``1`` lets 127.0.0.1 submit to ``smtprelay_serve``
  without logging in (``bench/submission.py``; smtp-source cannot log in).
- ``BENCH_ADMIN``: ``1`` adds Django's admin (and what it needs) for the
  admin-at-scale pages (``bench/admin_steps.py``).
"""

import os
import tempfile

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
WORKDIR = os.environ.get("BENCH_WORKDIR") or tempfile.gettempdir()

SUBJECT = os.environ.get("BENCH_SUBJECT", "smtprelay")
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
INSTALLED_APPS += {
    "smtprelay": ["django_smtprelay"],
    "post_office": ["post_office"],
    "mailer": ["mailer"],
}[SUBJECT]

# The webhook step posts through Django's test client (bench/webhooks.py).
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
if SUBJECT == "smtprelay":
    ROOT_URLCONF = "bench.urls"
    # As in Django's project template: it gives each response its Content-Length,
    # so the webhook step's concurrent clients keep their connections.
    MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ADMIN = os.environ.get("BENCH_ADMIN") == "1"
if ADMIN:
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.sessions",
        "django.contrib.messages",
        *INSTALLED_APPS,
    ]
    MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    # Sessions in signed cookies: a page view reads no session row, so the
    # query counts are the pages' own.
    SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

# post_office renders subjects and bodies as templates.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
if ADMIN:
    TEMPLATES[0]["OPTIONS"] = {
        "context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
            "django.contrib.messages.context_processors.messages",
        ]
    }

_database = os.environ.get("BENCH_DATABASE", f"sqlite:{WORKDIR}/bench.sqlite3")
_engine, _, _name = _database.partition(":")
if _engine == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "NAME": _name,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _name,
            # WAL, as Django's docs advise for SQLite under concurrency (and the
            # example project uses): every queue under test gets the same.
            # BENCH_SQLITE_SYNCHRONOUS (the webhook step's second pass only):
            # NORMAL, where a commit waits for no fsync.
            "OPTIONS": {
                "timeout": 60,
                "init_command": "PRAGMA journal_mode=WAL;"
                + (
                    f"PRAGMA synchronous={os.environ['BENCH_SQLITE_SYNCHRONOUS']};"
                    if os.environ.get("BENCH_SQLITE_SYNCHRONOUS")
                    else ""
                ),
            },
        }
    }

EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "2525"))
EMAIL_TIMEOUT = 60
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

if SUBJECT == "smtprelay":
    EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"
    # The app's defaults, but for what the benchmark itself must steer.
    SMTPRELAY = {
        "PUBLISH_ON_COMMIT": os.environ.get("BENCH_PUBLISH") == "1",
        "CELERY_QUEUE": os.environ.get("BENCH_QUEUE") or None,
        "EHLO_HOSTNAME": "bench.example.com",
    }
    if os.environ.get("BENCH_SUBMISSION") == "1":
        # smtp-source neither logs in nor speaks TLS: it submits from a trusted network.
        SMTPRELAY["SUBMISSION_TRUSTED_NETWORKS"] = ["127.0.0.1/32"]
        SMTPRELAY["SUBMISSION_HOSTNAME"] = "bench.example.com"
    if os.environ.get("BENCH_BATCH_SIZE"):
        SMTPRELAY["BATCH_SIZE"] = int(os.environ["BENCH_BATCH_SIZE"])
elif SUBJECT == "post_office":
    EMAIL_BACKEND = "post_office.EmailBackend"
    POST_OFFICE = {
        "BACKENDS": {"default": SMTP_BACKEND},
        "LOCK_FILE_NAME": os.path.join(WORKDIR, "post_office"),
    }
else:
    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = SMTP_BACKEND
    MAILER_LOCK_PATH = os.path.join(WORKDIR, "mailer")
    MAILER_EMPTY_QUEUE_SLEEP = 0

CELERY_BROKER_URL = os.environ.get("BENCH_BROKER", "memory://")
CELERY_RESULT_BACKEND = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
if os.environ.get("BENCH_CONN_MAX_AGE"):
    # Persistent connections, as Django advises for production (the webhook
    # step): a threaded server's request otherwise opens one of its own.
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["BENCH_CONN_MAX_AGE"])
