"""Fixtures of the submission listener's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.submission.harness import ListenerThread, addresses, serve_process  # noqa: F401


@pytest.fixture
def fast_hashers(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def listener(
    transactional_db: None, relay_settings: Callable[..., None], tls_certs: Any, fast_hashers: None
) -> Iterator[Callable[..., ListenerThread]]:
    """Start a listener (STARTTLS and implicit TLS on free ports) with ``SMTPRELAY`` keys."""
    started: list[ListenerThread] = []

    def start(**smtprelay: Any) -> ListenerThread:
        relay_settings(
            SUBMISSION_TLS_CERT_FILE=str(tls_certs.cert_file),
            SUBMISSION_TLS_KEY_FILE=str(tls_certs.key_file),
            SUBMISSION_HOSTNAME="mx.test.example",
            **smtprelay,
        )
        running = ListenerThread(addresses())
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
