"""Deliver the queue without Celery: for cron, and for debugging."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...delivery import DeliveryEngine, RunReport


class Command(BaseCommand):
    help = "Deliver every queued message that is due, then exit (or keep polling with --loop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop", action="store_true", help="Keep polling for due messages until interrupted."
        )
        parser.add_argument(
            "--interval", type=float, default=5.0, help="Seconds between polls with --loop."
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Messages per claim.")

    def handle(
        self, *args: Any, loop: bool, interval: float, batch_size: int | None, **options: Any
    ) -> None:
        if batch_size is not None and batch_size < 1:
            self.stderr.write(f"--batch-size must be at least 1, got {batch_size}.")
            raise SystemExit(2)
        while True:
            report = DeliveryEngine(batch_size=batch_size).run()
            if report.claimed or not loop:
                self.stdout.write(self._summary(report))
            if not loop:
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return

    @staticmethod
    def _summary(report: RunReport) -> str:
        return (
            f"claimed {report.claimed}, sent {report.sent}, deferred {report.deferred}, "
            f"failed {report.failed}, attempts {report.attempts}, sessions {report.sessions}"
        )
