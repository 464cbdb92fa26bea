"""The demo's SMTP submission: a certificate made at run time, an account, the
listener (``smtprelay_serve``) and one message sent to it with STARTTLS and AUTH.

The certificate comes from a private CA made here with ``cryptography``, so
the client verifies the listener exactly as a real one would, with nothing
to install. The files go under ``var/tls/`` (the settings point there).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
ACCOUNT = "demo-cron"
SENDER = "cron@example.com"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signer, *, ca: bool):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def make_certificates(directory: Path) -> Path:
    """A CA and the listener's certificate and key (listener.crt, listener.key); the CA's path."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("django-smtprelay demo CA")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    leaf = _certificate(_name("localhost"), ca_name, key.public_key(), ca_key, ca=False)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "listener.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "listener.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return directory / "ca.crt"


def reset_account() -> str:
    """Create the demo's account, or give it a new random password; return the password."""
    from django_smtprelay.models import SubmissionAccount

    password = secrets.token_urlsafe(12)
    account, _ = SubmissionAccount.objects.update_or_create(
        username=ACCOUNT,
        defaults={"name": "Demo cron job", "allowed_senders": SENDER, "enabled": True},
    )
    account.set_password(password)
    account.save()
    return password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_listener(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def submit(port: int, ca_file: Path, password: str, subject: str, to: str) -> str:
    """Send one message with STARTTLS (certificate verified) and AUTH; the listener's
    reply to the data ("250 2.0.0 Queued as N")."""
    message = EmailMessage()
    message["From"] = f"Cron <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content("The nightly backup finished; submitted over SMTP by a cron job.")
    context = ssl.create_default_context(cafile=str(ca_file))
    with smtplib.SMTP(HOST, port, timeout=15) as smtp:
        smtp.starttls(context=context)
        smtp.login(ACCOUNT, password)
        smtp.mail(SENDER)
        smtp.rcpt(to)
        code, reply = smtp.data(message.as_bytes(policy=SMTP))
    return f"{code} {reply.decode(errors='replace')}"
