"""System checks, by id."""

import pytest
from django.core.checks import run_checks


def ids(**kwargs):
    return {m.id for m in run_checks(**kwargs)}


def test_a_clean_configuration_has_no_errors():
    assert not {i for i in ids() if i.startswith("smtprelay.E")}


def test_unknown_setting_is_an_error_naming_it(settings):
    settings.SMTPRELAY = {"BATCH_SIZ": 10}
    messages = [m for m in run_checks() if m.id == "smtprelay.E001"]
    assert messages and "BATCH_SIZ" in messages[0].msg and messages[0].hint


@pytest.mark.parametrize("value", [0, -1, "ten", None])
def test_bad_numbers_are_errors_naming_the_value(settings, value):
    settings.SMTPRELAY = {"BATCH_SIZE": value}
    messages = [m for m in run_checks() if m.id == "smtprelay.E001"]
    assert messages and repr(value) in messages[0].msg


def test_bad_encryption_keys_are_an_error(settings):
    settings.SMTPRELAY = {"ENCRYPTION_KEYS": ["not-a-fernet-key"]}
    assert "smtprelay.E002" in ids()


def test_derived_key_is_reported_as_info(settings):
    settings.SMTPRELAY = {}
    assert "smtprelay.I001" in ids()


@pytest.mark.parametrize(
    ("value", "says"),
    [("tok-en-secret\n", "white space"), ("   ", "non-blank"), (b"tok-en-secret", "bytes")],
)
def test_a_bad_metrics_token_is_an_error_that_does_not_show_it(settings, value, says):
    settings.SMTPRELAY = {"METRICS_TOKEN": value}
    messages = [m for m in run_checks() if m.id == "smtprelay.E001"]
    assert messages and says in messages[0].msg and "METRICS_TOKEN" in messages[0].msg
    assert "tok-en-secret" not in messages[0].msg + messages[0].hint
