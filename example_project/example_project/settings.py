"""Settings for the example site: one machine, SQLite, and a Celery broker that needs no server.

Everything the site writes (the database, the broker's database, the beat
schedule, logs, the local relay's mailbox) goes under ``var/``, or under
``$EXAMPLE_VAR_DIR`` when that is set (the test suite points it at a
temporary folder).

Not for production as it stands: DEBUG is on and the secret key is public.
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-insecure-key-do-not-deploy")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_smtprelay",
    "outbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
LOGIN_URL = "admin:login"

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
            ],
        },
    },
]

# SQLite is shared by three processes here (the web server, the Celery worker
# and the demo script). A busy timeout makes a writer wait instead of failing;
# on Django 5.1+ WAL lets readers run beside a writer, and IMMEDIATE
# transactions take the write lock up front so two writers never deadlock.
_SQLITE_OPTIONS: dict[str, object] = {"timeout": 30}
if django.VERSION >= (5, 1):
    _SQLITE_OPTIONS |= {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
        "OPTIONS": _SQLITE_OPTIONS,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
STATIC_URL = "static/"

# -- Outbound mail -------------------------------------------------------------

# Every send_mail() is stored in the database and returns at once; Celery
# delivers it through the Route rows managed in the admin.
EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"
DEFAULT_FROM_EMAIL = "Example Site <noreply@example.com>"

# The app's settings; every key left out keeps its documented default
# (django_smtprelay/conf.py). These make retries quick enough to watch.
SMTPRELAY = {
    # Retry a deferred message after 30 s, 60 s, 120 s ... at most every 10 min.
    "RETRY_BASE_SECONDS": 30,
    "RETRY_MAX_SECONDS": 600,
    # Give up on a message that still cannot be delivered after a day.
    "MAX_LIFETIME_SECONDS": 24 * 3600,
    # A crashed worker's messages are taken over after a minute.
    "LEASE_SECONDS": 60,
    # The name sent in EHLO; without it, socket.getfqdn() may wait on DNS.
    "EHLO_HOSTNAME": "localhost",
    # Deliver only through Route rows: with none enabled, mail waits in the queue
    # rather than going to EMAIL_HOST (localhost:25).
    "USE_DJANGO_EMAIL_SETTINGS": False,
    # Relay passwords are encrypted with a key derived from SECRET_KEY unless
    # keys are given here (Fernet.generate_key(); the first one encrypts).
    # "ENCRYPTION_KEYS": [os.environ["SMTPRELAY_KEY"]],
    # The metrics at /smtprelay/metrics/ take this bearer token (or the admin's
    # login); a secret, so it comes from the environment.
    "METRICS_TOKEN": os.environ.get("SMTPRELAY_METRICS_TOKEN") or None,
    # The SMTP submission listener (manage.py smtprelay_serve): demo.py makes
    # this certificate at run time, from a CA of its own, and picks the port.
    "SUBMISSION_TLS_CERT_FILE": str(VAR_DIR / "tls" / "listener.crt"),
    "SUBMISSION_TLS_KEY_FILE": str(VAR_DIR / "tls" / "listener.key"),
    "SUBMISSION_HOSTNAME": "localhost",
}

# -- Celery --------------------------------------------------------------------

# The broker is kombu's SQLAlchemy transport on its own SQLite file: it needs
# no server, and its transactions (BEGIN IMMEDIATE) make hand-over between the
# web server, the demo script and the worker safe. Use Redis or RabbitMQ past
# one machine.
CELERY_BROKER_URL = f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}"
CELERY_BROKER_TRANSPORT_OPTIONS = {"connect_args": {"timeout": 30}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# The sweep delivers deferred messages when their retry time comes, takes over
# expired leases and picks up any message whose task was never published.
# Run beat beside the worker (``celery -A example_project worker -B``).
CELERY_BEAT_SCHEDULE = {
    "smtprelay-sweep": {"task": "django_smtprelay.sweep", "schedule": 60.0},
    # Retention: bodies and attempts of finished messages older than RETENTION_DAYS.
    "smtprelay-purge": {"task": "django_smtprelay.purge", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_smtprelay": {"handlers": ["console"], "level": "INFO"}},
}
