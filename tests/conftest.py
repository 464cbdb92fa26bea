"""Fixtures shared by the whole suite: real SMTP servers and their certificates."""

from tests.fixtures import (  # noqa: F401
    celery_app_for_tests,
    celery_worker,
    fresh_caches,
    make_route,
    queued_email_backend,
    relay_settings,
    trust_test_ca,
)
from tests.smtpserver import refused_port, smtp_server  # noqa: F401
from tests.tlscerts import tls_certs  # noqa: F401
