"""Django's own shared email backend tests, run against the queued backend.

``BaseEmailBackendTests`` in Django's ``tests/mail/tests.py`` (``SharedEmailBackendTests``
in ``tests/mail/test_backends.py`` from Django 6.1 on) is what every
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

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import django
import pytest
from aiosmtpd.smtp import Envelope
from django.test import TestCase

from django_smtprelay.backends import QueuedEmailBackend
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Route
from tests.smtpserver import SMTPTestServer

SDIST_VARIABLE = "SMTPRELAY_TEST_DJANGO_SDIST"
PACKAGE = "django_upstream_mail"

# Test name -> why the queued backend differs from Django's SMTP backend, and
# the error the test then meets.
DIFFERENCES: dict[str, tuple[str, type[BaseException]]] = {
    "test_recipient_without_domain": (
        "addresses without a domain ('tester', 'django') are refused with InvalidMessageError "
        "when queued: SMTP needs a domain (RFC 5321), and a relay would refuse them later, "
        "after send_mail() had reported success",
        InvalidMessageError,
    ),
    "test_lazy_addresses": (
        "lazy addresses are accepted, but this test's are without a domain ('tester'), "
        "which the queued backend refuses (see test_recipient_without_domain)",
        InvalidMessageError,
    ),
    "test_unknown_kwargs_ignored": (
        "Django 6.1's test expects the warning to name the class 'EmailBackend', the name of "
        "Django's own backends; this one is QueuedEmailBackend, and the warning names it so",
        AssertionError,
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
    # Into a folder of this process's own, then moved: two test runs at once
    # never read a half-written file.
    download = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
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
        str(download),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        found = sorted(download.glob("[dD]jango-*.tar.gz"))
        if result.returncode or not found:
            raise LookupError(result.stderr.strip().splitlines()[-1:] or ["no sdist downloaded"])
        return found[0].replace(cache / found[0].name)
    finally:
        shutil.rmtree(download, ignore_errors=True)


def load_django_mail_tests() -> ModuleType | str:
    """Django's tests/mail package as ``django_upstream_mail``, or why it cannot be had."""
    cache = _cache_dir()
    package = cache / PACKAGE
    if not (package / "tests.py").exists():
        try:
            sdist = _sdist(cache)
            with tarfile.open(sdist) as archive:
                members = [
                    m
                    for m in archive.getmembers()
                    if m.isfile() and "/tests/mail/" in m.name and m.name.endswith(".py")
                ]
                if not members:
                    raise LookupError(f"{sdist} has no tests/mail/")
                staging = Path(tempfile.mkdtemp(dir=cache, prefix=".extract-"))
                for member in members:
                    source = archive.extractfile(member)
                    assert source is not None
                    name = member.name.split("/tests/mail/", 1)[1]
                    if "/" not in name:  # the test modules; attachments are not needed
                        (staging / name).write_bytes(source.read())
            try:
                staging.rename(package)
            except OSError:  # another run got there first
                shutil.rmtree(staging, ignore_errors=True)
        except (LookupError, OSError, tarfile.TarError, subprocess.SubprocessError) as e:
            return (
                f"Django's own mail tests are not installed with Django; they come from the "
                f"Django {django.__version__} sdist, which could not be had here ({e}). "
                f"Allow `pip download --no-deps --no-binary :all: Django=={django.__version__}` "
                f"(PyPI), or set {SDIST_VARIABLE} to a downloaded sdist."
            )
    # A package, since newer Django's test modules import each other relatively.
    spec = importlib.util.spec_from_file_location(
        PACKAGE, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def shared_backend_tests(package: ModuleType) -> tuple[type, type]:
    """The class every Django backend must pass, and Django's test relay handler.

    Their names and modules vary by release.
    """
    import email.errors

    if not hasattr(email.errors, "HeaderWriteError"):
        # Newer Django's test_backends imports it (new in Python 3.12.x and
        # 3.13) for SMTP backend tests that are not run here; older Pythons
        # lack it, and the import alone would stop the shared tests.
        email.errors.HeaderWriteError = type("HeaderWriteError", (email.errors.MessageError,), {})
    try:  # Django 6.1 on
        module = importlib.import_module(f"{PACKAGE}.test_backends")
        return module.SharedEmailBackendTests, module.SMTPHandler
    except (ImportError, AttributeError):
        module = importlib.import_module(f"{PACKAGE}.tests")
        return module.BaseEmailBackendTests, module.SMTPHandler


upstream = load_django_mail_tests()

if isinstance(upstream, str):

    @pytest.mark.skip(reason=upstream)
    def test_djangos_shared_backend_tests() -> None:
        """Placeholder that carries the reason the suite was skipped."""

else:
    SharedTests, DjangoSMTPHandler = shared_backend_tests(upstream)

    class QueuedBackendPassesDjangosBackendTests(SharedTests, TestCase):
        """Django's shared backend tests; the mailbox is what a loopback relay received."""

        email_backend = "django_smtprelay.backends.QueuedEmailBackend"  # Django <= 6.0
        backend_class = QueuedEmailBackend  # Django 6.1 on

        @classmethod
        def setUpClass(cls) -> None:
            cls.relay = SMTPTestServer().start()
            cls.addClassCleanup(cls.relay.stop)
            super().setUpClass()

        def setUp(self) -> None:
            super().setUp()
            route = Route(name="loopback", host=self.relay.host, port=self.relay.port, timeout=5.0)
            route.security = Route.Security.NONE
            route.save()
            self.flush_mailbox()

        def flush_mailbox(self) -> None:
            DeliveryEngine().run()
            self.seen = len(self.relay.attempts)

        def get_mailbox_content(self) -> list:
            """Drain the queue; what the relay accepted, parsed as Django's own tests do."""
            DeliveryEngine().run()
            handler = DjangoSMTPHandler()
            for received in self.relay.attempts[self.seen :]:
                if received.accepted:
                    envelope = Envelope()
                    envelope.content = received.data
                    envelope.mail_from = received.mail_from
                    envelope.rcpt_tos = list(received.rcpt_tos)
                    asyncio.run(handler.handle_DATA(None, None, envelope))
            return handler.mailbox

    for _name, (_reason, _error) in DIFFERENCES.items():
        _test = getattr(QueuedBackendPassesDjangosBackendTests, _name, None)
        if _test is not None:  # not every Django release has every test
            setattr(
                QueuedBackendPassesDjangosBackendTests,
                _name,
                pytest.mark.xfail(reason=_reason, raises=_error, strict=True)(_test),
            )


def test_without_the_sdist_the_suite_is_skipped_naming_what_enables_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(SDIST_VARIABLE, str(tmp_path / "missing.tar.gz"))
    reason = load_django_mail_tests()
    assert isinstance(reason, str)
    assert f"pip download --no-deps --no-binary :all: Django=={django.__version__}" in reason
    assert SDIST_VARIABLE in reason
