"""The listener's settings: bad values are named, with what to write instead."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from django_smtprelay.submission.settings import ListenAddress, parse_listen, submission_settings


def test_listen_addresses_parse():
    assert parse_listen("tls://[::1]:465") == ListenAddress("tls", "::1", 465)
    assert str(parse_listen("[::1]:587")) == "starttls://[::1]:587"
    assert submission_settings.listen == [
        ListenAddress("starttls", "127.0.0.1", 587),
        ListenAddress("tls", "127.0.0.1", 465),
    ]


@pytest.mark.parametrize("value", ["smtp://127.0.0.1:25", "tls://127.0.0.1", "starttls://:587"])
def test_a_bad_listen_address_is_named(value):
    with pytest.raises(ImproperlyConfigured, match="starttls://HOST:PORT"):
        parse_listen(value)


def test_certificate_and_key_go_together(relay_settings):
    relay_settings(SUBMISSION_TLS_CERT_FILE="/etc/ssl/listener.crt")
    with pytest.raises(ImproperlyConfigured, match="got only the certificate"):
        _ = submission_settings.tls_files


def test_a_trusted_network_that_is_not_one_is_named(relay_settings):
    relay_settings(SUBMISSION_TRUSTED_NETWORKS=["192.168.1.0/24", "the office"])
    with pytest.raises(ImproperlyConfigured, match="'the office', which is not a network"):
        _ = submission_settings.trusted_networks


def test_implicit_tls_without_a_certificate_is_refused_by_the_command():
    with pytest.raises(CommandError, match="needs SMTPRELAY\\['SUBMISSION_TLS_CERT_FILE'\\]"):
        call_command("smtprelay_serve", "--listen", "tls://127.0.0.1:0")


def test_the_command_names_a_bad_option():
    with pytest.raises(CommandError, match="--threads must be at least 1"):
        call_command("smtprelay_serve", "--threads", "0")
    with pytest.raises(CommandError, match="is not understood"):
        call_command("smtprelay_serve", "--listen", "ftp://127.0.0.1:21")
