"""Check sending domains' DNS (SPF, DMARC, DKIM, MX, ...) and print what to fix.

Exits with status 1 when a domain is failing or its check failed, so it can gate a deploy or
feed monitoring; ``--json`` prints the format documented in docs/domains.md.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...domains.check import DomainReport, save_report
from ...domains.refresh import check_isolated
from ...domains.resolver import Resolver
from ...models import SenderDomain
from ...validators import is_domain_name


class Command(BaseCommand):
    help = (
        "Check the DNS of sending domains (all known ones when none are named) and print "
        "findings with fixes. Exits 1 when a domain is failing or could not be checked "
        "because of an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domains", nargs="*", metavar="DOMAIN")
        parser.add_argument("--json", action="store_true", help="Print a JSON list.")
        parser.add_argument(
            "--no-save", action="store_true", help="Do not store results on known domains."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = [d.strip().lower().rstrip(".") for d in options["domains"]]
        bad = [n for n in names if not is_domain_name(n)]
        if bad:
            raise CommandError(f"Not a domain name: {', '.join(bad)}")
        known = {d.domain: d for d in SenderDomain.objects.all()}
        names = names or sorted(known)
        if not names:
            raise CommandError(
                "No sending domains yet: name one (smtprelay_check_domains example.com) "
                "or add it in the admin."
            )
        resolver = Resolver()
        reports = []
        for name in names:
            sender_domain = known.get(name)
            selectors = sender_domain.selectors if sender_domain else []
            # A domain whose check raises is reported (check.error), and the rest go on.
            report = check_isolated(name, selectors=selectors, resolver=resolver)
            if sender_domain and not options["no_save"]:
                save_report(sender_domain, report)
            reports.append(report)
        if options["json"]:
            self.stdout.write(json.dumps([r.to_json() for r in reports], indent=2))
        else:
            for report in reports:
                self._print(report)
        if any(r.failing or _errored(r) for r in reports):
            raise SystemExit(1)

    def _print(self, report: DomainReport) -> None:
        style = {
            "ok": self.style.SUCCESS,
            "warning": self.style.WARNING,
            "failing": self.style.ERROR,
        }.get(report.verdict, self.style.NOTICE)
        self.stdout.write(style(f"{report.domain}: {report.verdict}"))
        for area, lines in report.records.items():
            for line in lines:
                self.stdout.write(f"  {area:8} {line}")
        for route in report.routes:
            by = "+".join(route.aligned_by) or "not aligned"
            self.stdout.write(f"  route {route.route}: SPF {route.spf}, DMARC {by}")
        for finding in report.findings:
            where = f" [{finding.route}]" if finding.route else ""
            self.stdout.write(
                f"  {finding.severity.upper():7} {finding.code}{where}: {finding.title}"
            )
            if finding.found:
                self.stdout.write(f"          found:    {finding.found}")
            if finding.expected:
                self.stdout.write(f"          expected: {finding.expected}")
            self.stdout.write(f"          fix:      {finding.hint}")


def _errored(report: DomainReport) -> bool:
    return any(f.code == "check.error" for f in report.findings)
