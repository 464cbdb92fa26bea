"""Run the SMTP submission listener: other programs queue mail over SMTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Listen for SMTP submission (STARTTLS or implicit TLS, AUTH PLAIN/LOGIN) and queue "
        "what is accepted. SIGHUP reloads the TLS certificate; SIGTERM finishes the "
        "transactions in progress and exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--listen",
            action="append",
            metavar="MODE://HOST:PORT",
            help="starttls://127.0.0.1:587 or tls://127.0.0.1:465 (repeatable); "
            "default: SMTPRELAY['SUBMISSION_LISTEN']. Port 0 picks a free port.",
        )
        parser.add_argument("--threads", type=int, default=4, help="Threads for database work (4).")

    def handle(self, *args: Any, listen: list[str] | None, threads: int, **options: Any) -> None:
        try:
            from ...submission.server import serve
            from ...submission.settings import parse_listen, submission_settings
        except ImportError as exc:
            raise CommandError(
                f"The listener needs aiosmtpd ({exc}): pip install 'django-smtprelay[submission]'"
            ) from exc
        _log_to_stderr(int(options.get("verbosity", 1)))
        if threads < 1:
            raise CommandError(f"--threads must be at least 1, got {threads}.")
        try:
            addresses = [parse_listen(v) for v in listen] if listen else submission_settings.listen
            asyncio.run(serve(addresses, threads=threads, ready=self._ready))
        except (ImproperlyConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"Cannot listen: {exc}") from exc
        self.stdout.write("Stopped.")

    def _ready(self, bound: list[Any]) -> None:
        for address in bound:
            self.stdout.write(f"Listening on {address}")
        self.stdout.flush()


def _log_to_stderr(verbosity: int) -> None:
    """A daemon's log must go somewhere: stderr, unless the site's LOGGING says where."""
    logger = logging.getLogger("django_smtprelay.submission")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
