"""``smtprelay_serve`` as a process: SIGTERM finishes the transaction in
progress, SIGHUP reloads the certificate, a database that is down gets 451;
and Postfix's smtp-source as the client."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from django.db import connection

from django_smtprelay.models import Message
from tests.submission.harness import client, message

pytestmark = pytest.mark.django_db(transaction=True)
SMTP_SOURCE = shutil.which("smtp-source") or (
    "/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None
)


def _db_env() -> dict[str, str]:
    return {"SMTPRELAY_TEST_DB_NAME": str(connection.settings_dict["NAME"])}


def _tls(tls_certs) -> dict[str, str]:
    return {
        "SUBMISSION_TLS_CERT_FILE": str(tls_certs.cert_file),
        "SUBMISSION_TLS_KEY_FILE": str(tls_certs.key_file),
    }


def _line(reader) -> bytes:
    line = reader.readline()
    assert line, "the listener closed the connection"
    return line


def test_sigterm_finishes_the_transaction_in_progress_and_exits(serve_process, tls_certs):
    serve = serve_process(
        ["starttls://127.0.0.1:0"],
        _db_env(),
        SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"],
        SUBMISSION_SHUTDOWN_GRACE_SECONDS=20,
        **_tls(tls_certs),
    )
    port = serve.bound["starttls"]
    busy = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    busy_in, idle_in = busy.makefile("rb"), idle.makefile("rb")
    assert _line(busy_in).startswith(b"220") and _line(idle_in).startswith(b"220")
    for command in (b"HELO c.example", b"MAIL FROM:<a@lan.example>", b"RCPT TO:<b@example.net>"):
        busy.sendall(command + b"\r\n")
        assert _line(busy_in).startswith(b"250")
    busy.sendall(b"DATA\r\n")
    assert _line(busy_in).startswith(b"354")
    busy.sendall(b"Subject: in flight\r\n\r\nthe first half\r\n")

    serve.process.send_signal(signal.SIGTERM)
    # The idle client is told to come back later and let go.
    assert _line(idle_in).startswith(b"421 4.3.2")
    # The one in the middle of its message finishes it, and it is queued.
    busy.sendall(b"and the second half\r\n.\r\n")
    assert _line(busy_in).startswith(b"250 2.0.0 Queued as")
    busy.close()
    idle.close()
    code, out, err = serve.finish(timeout=30)
    assert code == 0, err
    assert "Stopped." in out
    stored = Message.objects.get()
    assert stored.subject == "in flight"
    assert stored.raw.endswith(b"\r\n\r\nthe first half\r\nand the second half\r\n")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_database_down_answers_451_and_keeps_nothing(serve_process, tls_certs, refused_port):
    # PostgreSQL on a port where nothing listens: every query fails to connect.
    serve = serve_process(
        ["starttls://127.0.0.1:0"],
        {"SMTPRELAY_TEST_DATABASE": "postgres", "PGHOST": "127.0.0.1", "PGPORT": str(refused_port)},
        SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"],
        **_tls(tls_certs),
    )
    with client(serve.bound["starttls"], tls_certs.ca_file, starttls=False) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@lan.example", ["b@example.net"], message())
        assert refused.value.smtp_code == 451
        assert b"try again later" in refused.value.smtp_error
    serve.process.send_signal(signal.SIGTERM)
    code, _out, err = serve.finish()
    assert code == 0, err
    assert "could not be stored" in err


def test_sighup_reloads_the_certificate(serve_process, tls_certs, tmp_path):
    cert, key = tmp_path / "listener.crt", tmp_path / "listener.key"
    shutil.copy(tls_certs.cert_file, cert)
    shutil.copy(tls_certs.key_file, key)
    serve = serve_process(
        ["tls://127.0.0.1:0"],
        _db_env(),
        SUBMISSION_TLS_CERT_FILE=str(cert),
        SUBMISSION_TLS_KEY_FILE=str(key),
    )
    port = serve.bound["tls"]

    def served_names() -> str:
        context = ssl.create_default_context(cafile=str(tls_certs.ca_file))
        context.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return str(tls.getpeercert()["subjectAltName"])

    assert "localhost" in served_names()
    new_cert, new_key = tls_certs.issue(["renewed.example"], "renewed")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    serve.process.send_signal(signal.SIGHUP)
    deadline = 50
    while "renewed.example" not in served_names() and deadline:
        deadline -= 1
        subprocess.run(["sleep", "0.1"], check=True)
    assert "renewed.example" in served_names()
    serve.process.send_signal(signal.SIGTERM)
    assert serve.finish()[0] == 0


@pytest.mark.skipif(
    SMTP_SOURCE is None,
    reason="Postfix's smtp-source is not installed "
    "(apt-get install postfix provides /usr/sbin/smtp-source)",
)
def test_smtp_source_pushes_messages_over_parallel_sessions(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"])
    result = subprocess.run(
        [SMTP_SOURCE, "-s", "5", "-m", "100", "-d", "-l", "2000", "-f", "src@lan.example",
         "-t", "sink@example.net", "-S", "load", "-M", "source.example",
         f"127.0.0.1:{server.port()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Message.objects.filter(subject="load").count() == 100
    assert not Message.objects.exclude(from_email="src@lan.example").exists()
