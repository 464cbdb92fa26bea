"""Certificates for the test suite's SMTP servers, made fresh for each test session.

A private CA signs the server certificate for ``localhost``, ``127.0.0.1`` and
``::1``, so clients that trust only ``ca_file`` verify the chain and the host
name exactly as they would against a real relay.  Two deliberately bad
certificates let tests prove that verification is on:

* ``wrong``: self-signed for ``localhost`` (untrusted issuer);
* ``wrong_host``: signed by the test CA, but for ``wrong.example`` (host name mismatch).

EC P-256 keys keep generation to a few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_CHOICES", "TLSCerts", "make_tls_certs", "tls_certs"]

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
WRONG_HOST = "wrong.example"
CERT_CHOICES = ("good", "wrong", "wrong_host")


@dataclass(frozen=True)
class TLSCerts:
    """Paths of the PEM files; keys are unencrypted."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    wrong_cert_file: Path
    wrong_key_file: Path
    wrong_host_cert_file: Path
    wrong_host_key_file: Path
    ca_key_file: Path | None = None

    def issue(self, names: Sequence[str], stem: str) -> tuple[Path, Path]:
        """(certificate, key) for ``names``, signed by the test CA, written as ``stem``."""
        if self.ca_key_file is None:
            raise ValueError("these certificates were made without the CA's key")
        ca_key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_name = x509.load_pem_x509_certificate(self.ca_file.read_bytes()).subject
        key = _key()
        return _write_pair(self.directory, stem, _leaf(names, ca_name, ca_key, key), key)

    def pair(self, which: str = "good") -> tuple[Path, Path]:
        """(certificate, key) for ``which`` in ``CERT_CHOICES``."""
        pairs = {
            "good": (self.cert_file, self.key_file),
            "wrong": (self.wrong_cert_file, self.wrong_key_file),
            "wrong_host": (self.wrong_host_cert_file, self.wrong_host_key_file),
        }
        try:
            return pairs[which]
        except KeyError:
            raise ValueError(f"cert={which!r}: expected one of {CERT_CHOICES}") from None

    def server_context(self, which: str = "good") -> ssl.SSLContext:
        """A server-side context presenting the chosen certificate."""
        cert, key = self.pair(which)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "django-smtprelay tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey):
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(
    names: Sequence[str],
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    builder = (
        _builder(_name(names[0]), issuer, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_tls_certs(directory: Path) -> TLSCerts:
    """Create the test CA and the three server certificates in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("django-smtprelay test CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, ca_key_file = _write_pair(directory, "ca", ca_cert, ca_key)

    key = _key()
    cert_file, key_file = _write_pair(
        directory, "server", _leaf(SERVER_NAMES, ca_name, ca_key, key), key
    )
    # Self-signed: same names, but no trusted issuer.
    wrong_key = _key()
    wrong = _leaf(SERVER_NAMES, _name(SERVER_NAMES[0]), wrong_key, wrong_key)
    wrong_cert_file, wrong_key_file = _write_pair(directory, "wrong", wrong, wrong_key)
    # Trusted issuer, but for another host.
    host_key = _key()
    wrong_host = _leaf((WRONG_HOST,), ca_name, ca_key, host_key)
    wrong_host_cert_file, wrong_host_key_file = _write_pair(
        directory, "wrong-host", wrong_host, host_key
    )
    return TLSCerts(
        directory=directory,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        wrong_cert_file=wrong_cert_file,
        wrong_key_file=wrong_key_file,
        wrong_host_cert_file=wrong_host_cert_file,
        wrong_host_key_file=wrong_host_key_file,
        ca_key_file=ca_key_file,
    )


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    """The session's test CA and server certificates."""
    return make_tls_certs(tmp_path_factory.mktemp("tls"))
