"""The queue: messages, their envelope recipients, and delivery attempts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connections, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .bulk import ids_in
from .fields import AddressDomainField
from .routes import Route
from .submission import SubmissionAccount


class Claim(tuple):
    """What :meth:`MessageQuerySet.claim` won: unpacks as ``(token, ids)``.

    ``taken_over``: the ids whose earlier lease had expired. Their worker may
    have handed them to a relay before it stopped, so a send now is a possible
    duplicate.
    """

    token: uuid.UUID
    ids: list[int]
    taken_over: frozenset[int]

    def __new__(cls, token: uuid.UUID, ids: list[int], taken_over: Iterable[int] = ()) -> Claim:
        claim = super().__new__(cls, (token, ids))
        claim.token, claim.ids = token, ids
        claim.taken_over = frozenset(taken_over).intersection(ids)
        return claim

    def __getnewargs__(self) -> tuple[uuid.UUID, list[int], frozenset[int]]:  # pickle, copy
        return self.token, self.ids, self.taken_over


class MessageQuerySet(models.QuerySet["Message"]):
    """Queue operations; the engine and the admin use these, never raw filters."""

    def due(self, now: datetime | None = None) -> MessageQuerySet:
        """Messages a worker may take now: queued or deferred and due, or with an expired lease."""
        now = now or timezone.now()
        return self.filter(
            Q(status__in=(Message.Status.QUEUED, Message.Status.DEFERRED), next_attempt_at__lte=now)
            | Q(status=Message.Status.SENDING, lease_expires_at__lt=now)
        )

    def claim(self, limit: int, lease: timedelta, now: datetime | None = None) -> Claim:
        """Lease up to ``limit`` due messages to the caller: a :class:`Claim`
        (unpacks as ``token, ids``; ``taken_over`` names the ids whose earlier
        lease had expired, which may already have reached a relay).

        Only one caller can win a message: on databases with ``SKIP LOCKED``
        (PostgreSQL, MySQL, Oracle) the rows are locked while they are marked;
        elsewhere (SQLite) one guarded ``UPDATE`` re-checks that each row is
        still due, and the database serializes writers.

        New mail fills at most ``NEW_SHARE`` of a batch while retries are due,
        so neither a backlog of retries nor a burst of new mail starves the other.
        """
        now = now or timezone.now()
        token = uuid.uuid4()
        values = {
            "status": Message.Status.SENDING,
            "lease_token": token,
            "lease_expires_at": now + lease,
        }
        if connections[self.db].features.has_select_for_update_skip_locked:
            with transaction.atomic(using=self.db):
                ids, expired = self._candidates(limit, now, lock=True)
                if ids:
                    self.filter(ids_in(ids)).update(**values)
                if expired:
                    self.filter(ids_in(sorted(expired))).update(possible_duplicate=True)
            return Claim(token, ids, expired)
        # No transaction around the read: on SQLite a read that later wants to
        # write fails at once under contention instead of waiting its turn.
        ids, expired = self._candidates(limit, now, lock=False)
        if not ids:
            return Claim(token, [])
        self.due(now).filter(ids_in(ids)).update(**values)
        won = list(self.filter(lease_token=token).values_list("pk", flat=True))
        claim = Claim(token, won, expired)
        if claim.taken_over:
            self.filter(ids_in(sorted(claim.taken_over))).update(possible_duplicate=True)
        return claim

    NEW_SHARE = 0.8

    def _candidates(self, limit: int, now: datetime, *, lock: bool) -> tuple[list[int], set[int]]:
        """Ids to claim in due order, and those among them whose lease expired."""

        # One query per state, each an ordered walk of the smtprelay_msg_due
        # index that stops after ``n`` rows: a claim costs the same with 5,000
        # or 500,000 messages queued (an ORDER BY over an OR would sort them all).
        def take(status: str, cond: Q, n: int, keys: bool = False) -> list:
            """Up to ``n`` ids in due order; with ``keys``, (priority, due, id) tuples."""
            if n <= 0:
                return []
            qs = self.filter(cond, status=status)
            if lock:
                qs = qs.select_for_update(skip_locked=True)
            qs = qs.order_by("priority", "next_attempt_at", "pk")
            if keys:
                return list(qs.values_list("priority", "next_attempt_at", "pk")[:n])
            return list(qs.values_list("pk", flat=True)[:n])

        due = Q(next_attempt_at__lte=now)
        fresh_share = max(1, int(limit * self.NEW_SHARE))
        # New mail gets its share, retries the room left, and new mail again
        # whatever the retries do not fill.
        fresh = take(Message.Status.QUEUED, due, limit)
        room = limit - min(len(fresh), fresh_share)
        # Retries of two states compete for the room in due order, so they
        # come with their sort keys; new mail needs only its ids.
        expired = take(Message.Status.SENDING, Q(lease_expires_at__lt=now), room, keys=True)
        retries = take(Message.Status.DEFERRED, due, room, keys=True) + expired
        retry_ids = [pk for *_rest, pk in sorted(retries)[:room]]
        fresh = fresh[: limit - len(retry_ids)]
        taken_over = {pk for *_rest, pk in expired}.intersection(retry_ids)
        return fresh + retry_ids, taken_over

    def cancel(self, now: datetime | None = None) -> int:
        """Cancel the messages no worker holds; return how many.

        Queued and deferred messages are cancelled, and so are those whose
        lease expired (their worker is gone); a message being sent under a live
        lease, or already final, is left alone. Every open recipient of the
        cancelled messages is cancelled with them, in the same transaction, so
        no recipient stays pending under a final message.
        """
        now = now or timezone.now()
        cancellable = Q(status__in=(Message.Status.QUEUED, Message.Status.DEFERRED)) | Q(
            status=Message.Status.SENDING, lease_expires_at__lt=now
        )
        count = 0
        with transaction.atomic(using=self.db):
            # Ids first: the queryset may filter on the status this changes.
            # Messages cancelled before come too, for recipients left open.
            ids = list(
                self.filter(cancellable | Q(status=Message.Status.CANCELLED)).values_list(
                    "pk", flat=True
                )
            )
            messages = Message.objects.using(self.db)
            recipients = Recipient.objects.using(self.db)
            for start in range(0, len(ids), self.CANCEL_CHUNK):
                chunk = ids_in(ids[start : start + self.CANCEL_CHUNK])
                # Guarded: a message a worker claimed since the read stays out.
                count += (
                    messages.filter(chunk)
                    .filter(cancellable)
                    .update(
                        status=Message.Status.CANCELLED, lease_token=None, lease_expires_at=None
                    )
                )
                recipients.filter(
                    message__in=messages.filter(chunk, status=Message.Status.CANCELLED).values(
                        "pk"
                    ),
                    status__in=(Recipient.Status.PENDING, Recipient.Status.DEFERRED),
                ).update(status=Recipient.Status.CANCELLED, updated_at=now)
        return count

    # Ids per statement, under every database's limit of bound parameters.
    CANCEL_CHUNK = 5000

    def unfinished(self) -> MessageQuerySet:
        """Messages that have not reached a final state (sent, failed or cancelled) yet."""
        return self.exclude(status__in=Message.FINAL_STATES)

    def leased_by(self, token: uuid.UUID) -> MessageQuerySet:
        """Messages still held by the lease ``token`` (a lost lease matches nothing)."""
        return self.filter(lease_token=token, status=Message.Status.SENDING)


class Message(models.Model):
    """One queued email: the exact bytes Django would have sent, and its envelope."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        DEFERRED = "deferred", _("Deferred")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class Priority(models.IntegerChoices):
        NOW = 0, _("Now")
        HIGH = 1, _("High")
        NORMAL = 2, _("Normal")
        LOW = 3, _("Low")

    # The states a message ends in; no worker claims it after one of them.
    FINAL_STATES = (Status.SENT, Status.FAILED, Status.CANCELLED)

    # No index of its own: smtprelay_msg_due starts with it (one index fewer
    # to rewrite at every claim and every result).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    from_email = models.CharField(_("envelope sender"), max_length=254)
    # Indexed by smtprelay_msg_sender_domain below (equality lookups only).
    sender_domain = models.CharField(max_length=253, blank=True)
    from_domain = models.CharField(
        max_length=253, blank=True, help_text=_("Domain of the From header (DMARC's domain).")
    )
    subject = models.CharField(max_length=255, blank=True)
    # Indexed by smtprelay_msg_message_id below (equality lookups only).
    message_id = models.CharField(max_length=255, blank=True)
    size = models.PositiveIntegerField(default=0)
    route_hint = models.CharField(max_length=100, blank=True)
    retry_route = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("Route to retry on first (greylisting, or a reply lost after the data)."),
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    deliver_by = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "Never sent after this time (the sender's expiry): it fails as expired instead."
        ),
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    possible_duplicate = models.BooleanField(
        default=False,
        editable=False,
        help_text=_(
            "A relay may have received it twice: a worker's lease expired while it "
            "held it, or a reply was lost after the final dot."
        ),
    )

    # Indexed by smtprelay_msg_account below, only where set.
    submission_account = models.ForeignKey(
        SubmissionAccount,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="messages",
        editable=False,
        help_text=_("The SMTP submission account it came in with; empty: queued by the site."),
    )

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-pk")
        indexes = [
            models.Index(
                fields=["status", "priority", "next_attempt_at"], name="smtprelay_msg_due"
            ),
            # In Meta, not db_index=True on the fields: on PostgreSQL that adds a
            # second index per field (varchar_pattern_ops, for LIKE 'prefix%'),
            # which no query here uses (equality lookups; the admin's search is
            # icontains, which no index serves) and which every send_mail()
            # wrote to (migration 0023).
            models.Index(fields=["message_id"], name="smtprelay_msg_message_id"),
            models.Index(fields=["sender_domain"], name="smtprelay_msg_sender_domain"),
            # Partial: a message the site queues has no account, and queueing it
            # writes no entry here (a filter by account, or its deletion's
            # SET_NULL, implies one is set).
            models.Index(
                fields=["submission_account"],
                name="smtprelay_msg_account",
                condition=models.Q(submission_account__isnull=False),
            ),
            # Partial: a message holds a lease only while a worker sends it, so
            # queueing a message writes no entry here (one index fewer per
            # send_mail(); a lookup by token implies it is not NULL).
            models.Index(
                fields=["lease_token"],
                name="smtprelay_msg_leased",
                condition=models.Q(lease_token__isnull=False),
            ),
            # The open messages only, by age: the dashboard's oldest deferred is
            # one probe, the queue's counts and the list filtered by an open state
            # a range, however long the history; a sent message costs it nothing.
            # (The index on created_at alone would be walked from the oldest sent
            # message on: PostgreSQL picks it for MIN(created_at) ... WHERE status.)
            models.Index(
                fields=["status", "created_at"],
                name="smtprelay_msg_open",
                condition=models.Q(status__in=("queued", "sending", "deferred")),
            ),
        ]
        permissions = [
            ("view_message_body", _("Can view message bodies (preview and .eml download)")),
        ]

    def __str__(self) -> str:
        return self.subject or str(_("(no subject)"))

    @property
    def raw(self) -> bytes:
        """The message exactly as it is sent (from :class:`MessageContent`)."""
        return bytes(self.content.raw)


class MessageContent(models.Model):
    """A message's bytes, in a table of their own.

    Claims and results rewrite a message's row twice per delivery; with the
    content beside them, every rewrite would copy kilobytes (a SQLite row is
    rewritten whole, a PostgreSQL row version copied). The queue's rows stay small.
    """

    # No foreign-key constraint in the database (db_constraint=False): the
    # only writer of a content row is the statement or transaction that
    # writes its message (models/store.py), and deletes cascade through
    # Django (on_delete). The constraint's check, run at every commit, read
    # and locked the message row just written (bench/README.md).
    message = models.OneToOneField(
        Message,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="content",
        db_constraint=False,
    )
    raw = models.BinaryField(help_text=_("The message exactly as it is sent (RFC 5322 bytes)."))

    class Meta:
        verbose_name = _("message content")

    def __str__(self) -> str:
        return f"content of message {self.message_id} ({len(self.raw)} bytes)"


class Recipient(models.Model):
    """One envelope recipient of a message, with its own fate."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DEFERRED = "deferred", _("Deferred")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        SUPPRESSED = "suppressed", _("Suppressed")
        CANCELLED = "cancelled", _("Cancelled")

    # No foreign-key constraint in the database, as MessageContent.message:
    # recipients are written with their message only, deletes cascade
    # through Django. Still indexed (db_index).
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="recipients", db_constraint=False
    )
    address = models.CharField(max_length=254)
    # Lower case, IDNA-encoded: the recipient-domain filter and "@domain"
    # search read an index range of it (an address's end fits no index).
    domain = AddressDomainField(_("domain"))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=16, blank=True)
    reply = models.TextField(blank=True)
    # Indexed by smtprelay_rcpt_route below, only where set.
    route = models.ForeignKey(
        Route, null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    updated_at = models.DateTimeField(null=True, blank=True)
    # The id the relay or ESP gave the message when it accepted it for this
    # recipient (an ESP API's message id, or the id in an SMTP 250 reply), by
    # which the provider's later events (delivered, bounced, ...) are matched.
    provider_message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ("pk",)
        indexes = [
            # An address typed into the search box, in any case.
            models.Index(Lower("address"), name="smtprelay_rcpt_address_lower"),
            # Every recipient at a domain; with the message, the message list's
            # "any recipient at" filter is read from the index alone.
            models.Index(fields=["domain", "message"], name="smtprelay_rcpt_domain"),
            # The recipient list's time filters (last hour, day, week): a
            # range of it, not a scan of every recipient.
            models.Index(fields=["updated_at"], name="smtprelay_rcpt_updated"),
            # Partial on PostgreSQL and SQLite: most rows have no provider id.
            models.Index(
                fields=["provider_message_id"],
                name="smtprelay_rcpt_provider_id",
                condition=~models.Q(provider_message_id=""),
            ),
            # Partial: a queued recipient has no route yet, and queueing it
            # writes no entry here (a filter by route implies it is set).
            models.Index(
                fields=["route"],
                name="smtprelay_rcpt_route",
                condition=models.Q(route__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.address


class DeliveryAttempt(models.Model):
    """One try of one message over one route, with the server's exact reply."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", _("Delivered")
        PARTIAL = "partial", _("Partly delivered")
        TRANSIENT = "transient", _("Transient failure (retry later)")
        PERMANENT = "permanent", _("Permanent failure")
        ROUTE_FAULT = "route_fault", _("Route fault (failed over)")
        UNCERTAIN = "uncertain", _("Uncertain (connection lost after data)")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    route = models.ForeignKey(Route, null=True, blank=True, on_delete=models.SET_NULL)
    route_name = models.CharField(max_length=100)
    started_at = models.DateTimeField(default=timezone.now)
    duration = models.DurationField(default=timedelta)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    stage = models.CharField(max_length=12, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=16, blank=True)
    reply = models.TextField(blank=True)
    exception = models.CharField(max_length=255, blank=True)
    recipients = models.JSONField(default=list, blank=True)
    possible_duplicate = models.BooleanField(default=False)
    # The DKIM keys the message was signed with on this attempt, by where each
    # is published ("s1._domainkey.example.com", space-separated); blank: unsigned.
    dkim_keys = models.CharField(_("DKIM keys"), max_length=600, blank=True)
    route_choice = models.JSONField(
        null=True,
        blank=True,
        help_text=_(
            "Why this route: the destination group and, per candidate route, its share "
            "of that group's traffic and the figures behind it."
        ),
    )

    class Meta:
        ordering = ("-started_at", "-pk")
        indexes = [
            # The dashboard's top errors link to a route's attempts with one
            # outcome since a time: a range of it, not a scan of every attempt.
            models.Index(
                fields=["route_name", "outcome", "started_at"], name="smtprelay_attempt_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.route_name}: {self.outcome} {self.smtp_code or ''}".strip()
