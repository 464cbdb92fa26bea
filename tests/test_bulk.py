"""``ids_in``/``strings_in``: IN lists bound as parameters, the same rows as ``__in``."""

from __future__ import annotations

import pytest
from django.core.mail import send_mass_mail

from django_smtprelay.models import Message, Recipient
from django_smtprelay.models.bulk import ids_in, strings_in


@pytest.fixture
def queued(settings) -> list[int]:
    settings.EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"
    send_mass_mail(
        [
            ("s", "b", "from@example.com", [f"r{i}@example.com", f"c{i}@example.com"])
            for i in range(6)
        ]
    )
    return list(Message.objects.order_by("pk").values_list("pk", flat=True))


@pytest.mark.django_db
def test_ids_in_selects_and_updates_the_same_rows_as_pk_in(queued: list[int]) -> None:
    some = queued[1:5:2]
    assert set(Message.objects.filter(ids_in(some)).values_list("pk", flat=True)) == set(some)
    assert Message.objects.filter(ids_in(some)).update(subject="picked") == len(some)
    assert set(Message.objects.filter(subject="picked").values_list("pk", flat=True)) == set(some)
    rcpts = Recipient.objects.filter(ids_in(some, "message_id"))
    assert sorted(rcpts.values_list("message_id", flat=True)) == sorted(some * 2)


@pytest.mark.django_db
def test_ids_in_with_no_ids_matches_nothing(queued: list[int]) -> None:
    assert not Message.objects.filter(ids_in([])).exists()
    assert Message.objects.filter(ids_in([])).update(subject="none") == 0


def test_ids_in_refuses_anything_but_integers() -> None:
    with pytest.raises(ValueError, match="1; DROP"):
        ids_in(["1; DROP TABLE x"])


@pytest.mark.django_db
def test_strings_in_matches_the_same_rows_as_in(queued: list[int]) -> None:
    wanted = ["r1@example.com", "c4@example.com", "nobody@example.com", 'it\'s "quoted"']
    expected = set(Recipient.objects.filter(address__in=wanted).values_list("pk", flat=True))
    got = set(Recipient.objects.filter(strings_in(wanted, "address")).values_list("pk", flat=True))
    assert got == expected and len(got) == 2
    assert not Recipient.objects.filter(strings_in([], "address")).exists()
    with pytest.raises(TypeError, match="takes strings, got 3"):
        strings_in(["a", 3], "address")  # type: ignore[list-item]


@pytest.mark.django_db
def test_a_row_preparer_converts_as_the_fields_do() -> None:
    """The engine's attempt rows convert a time and a duration per send without
    the field's generic steps; the values are the ones the field would give."""
    from datetime import UTC, datetime, timedelta, timezone

    from django.db import connection

    from django_smtprelay.delivery.results import ATTEMPT_COLUMNS
    from django_smtprelay.models import DeliveryAttempt
    from django_smtprelay.models.bulk import RowPreparer

    values = [
        datetime(2026, 11, 30, 12, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 30, 5, tzinfo=timezone(timedelta(hours=2))),
        timedelta(seconds=0.001234),
        timedelta(days=2, microseconds=7),
        None,
        "2026-11-30 12:30:05",
    ]
    fields = [DeliveryAttempt._meta.get_field(name) for name in ATTEMPT_COLUMNS]
    checked = 0
    for field in fields:
        if field.get_internal_type() not in ("DateTimeField", "DurationField"):
            continue  # the others take the field's own path
        prepare = RowPreparer([field], connection)
        for value in values:
            try:
                expected = field.get_db_prep_save(value, connection)
            except Exception as exc:  # a value the field refuses is refused alike
                expected = type(exc)
            try:
                got = prepare([value])[0]
            except Exception as exc:
                got = type(exc)
            assert (got, type(got)) == (expected, type(expected)), (field.name, value)
            checked += 1
    assert checked == 2 * len(values)  # started_at, duration
