"""Django's own shared email backend tests, run against the queued backend.

``BaseEmailBackendTests`` in Django's ``tests/mail/tests.py`` is what every
Django backend must pass. Django's wheel ships no tests, so this module takes
that file from the source distribution of the installed Django version
(``pip download --no-deps --no-binary :all: Django==X``), caches it under the
user's cache folder, and runs the class with the queued backend: each
message is queued, the queue is drained by the delivery engine to a loopback
relay, and the mailbox is what the relay received.

Where the queued backend differs on purpose, the test is marked xfail with the
reason; README.md ("Differences from Django's SMTP backend") lists the same.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from email import message_from_bytes, policy
from pathlib import Path
from types import ModuleType

import django
import pytest
from django.test import TestCase, override_settings

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import InvalidMessageError
from tests.smtpserver import SMTPTestServer

SDIST_VARIABLE = "SMTPRELAY_TEST_DJANGO_SDIST"

# Test name -> why the queued backend differs from Django's SMTP backend.
DIFFERENCES = {
    "test_recipient_without_domain": (
        "addresses without a domain ('tester', 'django') are refused with InvalidMessageError "
        "when queued: SMTP needs a domain (RFC 5321), and a relay would refuse them later, "
        "after send_mail() had reported success"
    ),
    "test_lazy_addresses": (
        "lazy addresses are accepted, but this test's are without a domain ('tester'), "
        "which the queued backend refuses (see test_recipient_without_domain)"
    ),
}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "django-smtprelay" / f"django-{django.__version__}"


def _sdist(cache: Path) -> Path:
    """The installed Django's sdist: from SMTPRELAY_TEST_DJANGO_SDIST, the cache, or pip."""
    if os.environ.get(SDIST_VARIABLE):
        return Path(os.environ[SDIST_VARIABLE])
    found = sorted(cache.glob("[dD]jango-*.tar.gz"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"Django=={django.__version__}",
        "--dest",
        str(cache),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    found = sorted(cache.glob("[dD]jango-*.tar.gz"))
    if result.returncode or not found:
        raise LookupError(result.stderr.strip().splitlines()[-1:] or ["no sdist downloaded"])
    return found[0]


def load_django_mail_tests() -> ModuleType | str:
    """Django's tests/mail/tests.py as a module, or the reason it cannot be had."""
    cache = _cache_dir()
    target = cache / "mail_tests.py"
    if not target.exists():
        try:
            sdist = _sdist(cache)
            with tarfile.open(sdist) as archive:
                member = next(
                    m for m in archive.getmembers() if m.name.endswith("/tests/mail/tests.py")
                )
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
        except (
            LookupError,
            OSError,
            StopIteration,
            tarfile.TarError,
            subprocess.SubprocessError,
        ) as e:
            return (
                f"Django's own mail tests are not installed with Django; they come from the "
                f"Django {django.__version__} sdist, which could not be had here ({e}). "
                f"Allow `pip download --no-deps --no-binary :all: Django=={django.__version__}` "
                f"(PyPI), or set {SDIST_VARIABLE} to a downloaded sdist."
            )
    spec = importlib.util.spec_from_file_location("django_upstream_mail_tests", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


upstream = load_django_mail_tests()

if isinstance(upstream, str):

    @pytest.mark.skip(reason=upstream)
    def test_djangos_shared_backend_tests() -> None:
        """Placeholder that carries the reason the suite was skipped."""

else:

    class QueuedBackendPassesDjangosBackendTests(upstream.BaseEmailBackendTests, TestCase):
        """Django's shared backend tests; the mailbox is what a loopback relay received."""

        email_backend = "django_smtprelay.backends.QueuedEmailBackend"

        @classmethod
        def setUpClass(cls) -> None:
            cls.relay = SMTPTestServer().start()
            cls.addClassCleanup(cls.relay.stop)
            # No Route rows: the engine's fallback route is EMAIL_HOST/EMAIL_PORT,
            # which Django's SMTP backend tests point at their relay the same way.
            cls.enterClassContext(
                override_settings(
                    EMAIL_HOST=cls.relay.host,
                    EMAIL_PORT=cls.relay.port,
                    EMAIL_USE_TLS=False,
                    EMAIL_USE_SSL=False,
                )
            )
            super().setUpClass()

        def setUp(self) -> None:
            super().setUp()
            self.flush_mailbox()

        def flush_mailbox(self) -> None:
            DeliveryEngine().run()
            self.seen = len(self.relay.attempts)

        def get_mailbox_content(self) -> list:
            DeliveryEngine().run()
            received = self.relay.attempts[self.seen :]
            return [
                message_from_bytes(m.data.rstrip(), policy=policy.default)
                for m in received
                if m.accepted
            ]

    for _name, _reason in DIFFERENCES.items():
        _test = getattr(QueuedBackendPassesDjangosBackendTests, _name, None)
        if _test is not None:
            setattr(
                QueuedBackendPassesDjangosBackendTests,
                _name,
                pytest.mark.xfail(reason=_reason, raises=InvalidMessageError, strict=True)(_test),
            )


def test_without_the_sdist_the_suite_is_skipped_naming_what_enables_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(SDIST_VARIABLE, str(tmp_path / "missing.tar.gz"))
    reason = load_django_mail_tests()
    assert isinstance(reason, str)
    assert f"pip download --no-deps --no-binary :all: Django=={django.__version__}" in reason
    assert SDIST_VARIABLE in reason
