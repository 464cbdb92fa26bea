"""Checking many domains in a row: one domain's failure never stops the rest.

The Celery task, the management command and the admin's bulk action all
check a list of domains; a bug or an unforeseen record in one zone must not
leave every later domain unchecked. A check that raises is logged with its
traceback and stored on its domain as a ``check.error`` finding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.utils import timezone

from .check import DomainReport, check_domain, save_report
from .findings import VERDICT_UNKNOWN, finding
from .resolver import Resolver

if TYPE_CHECKING:
    from ..models import SenderDomain

logger = logging.getLogger(__name__)


def error_report(domain: str, exc: BaseException) -> DomainReport:
    """The report of a check that raised: verdict unknown, one ``check.error`` finding."""
    report = DomainReport(domain, timezone.now(), verdict=VERDICT_UNKNOWN)
    report.findings.append(finding("check.error", found=f"{type(exc).__name__}: {exc}"))
    report.areas["check"] = VERDICT_UNKNOWN
    return report


def check_isolated(
    domain: str, *, selectors: Iterable[str] = (), resolver: Resolver | None = None
) -> DomainReport:
    """:func:`check_domain`, with any exception turned into an error report."""
    try:
        return check_domain(domain, selectors=selectors, resolver=resolver)
    except Exception as exc:  # one domain's failure is recorded, never propagated
        logger.exception("Checking the sending domain %s failed", domain)
        return error_report(domain, exc)


def check_and_save(sender_domain: SenderDomain, resolver: Resolver | None = None) -> DomainReport:
    """Check a SenderDomain and store the result, or the error that stopped the check."""
    report = check_isolated(
        sender_domain.domain, selectors=sender_domain.selectors, resolver=resolver
    )
    save_report(sender_domain, report)
    return report


def refresh_domains(domains: Iterable[str] | None = None) -> dict[str, int]:
    """Check the given domains (all SenderDomains by default); return a count per verdict.

    One resolver is shared by the run, so records common to many domains (a
    relay's SPF include, the organizational domain's DMARC) are asked once;
    each domain still gets its own query and time budget.
    """
    from ..models import SenderDomain

    queryset = SenderDomain.objects.all()
    if domains is not None:
        queryset = queryset.filter(domain__in=list(domains))
    resolver = Resolver()
    counts: dict[str, int] = {}
    for sender_domain in queryset.iterator():
        try:
            verdict = check_and_save(sender_domain, resolver).verdict
        except Exception:  # saving failed: log it and go on with the next domain
            logger.exception("Saving the check of %s failed", sender_domain.domain)
            verdict = "error"
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts
