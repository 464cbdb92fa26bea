"""Purge the bodies and attempts of old finished messages (see ``RETENTION_DAYS``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import ngettext

from ... import retention


class Command(BaseCommand):
    help = (
        "Delete the content and attempts of sent, failed and cancelled messages queued more "
        "than RETENTION_DAYS ago; the messages, their recipients and the statistics stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be purged; delete nothing."
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        report = retention.purge(dry_run=dry_run)
        if report.cutoff is None:
            self.stdout.write("Retention is off (RETENTION_DAYS is None): nothing purged.")
            return
        what = ngettext(
            "the content and attempts of %(count)d message (%(attempts)d attempts)",
            "the content and attempts of %(count)d messages (%(attempts)d attempts)",
            report.messages,
        ) % {"count": report.messages, "attempts": report.attempts}
        verb = "Would purge" if dry_run else "Purged"
        self.stdout.write(f"{verb} {what} queued before {report.cutoff.isoformat()}.")
