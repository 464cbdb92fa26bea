"""Fixtures shared by the whole suite: real SMTP servers and their certificates."""

from tests.smtpserver import refused_port, smtp_server  # noqa: F401
from tests.tlscerts import tls_certs  # noqa: F401
