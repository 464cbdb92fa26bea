"""sign_message's edges: what it refuses, and the forms a message can come in."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from django_smtprelay.signing import keys, signer
from django_smtprelay.signing.signer import SignedContent, SigningError, SigningKey, sign_message

RSA_PEM = keys.generate(keys.RSA_SHA256)
ED_PEM = keys.generate(keys.ED25519_SHA256)
RSA = SigningKey("example.com", "r", keys.RSA_SHA256, keys.load_private_key(RSA_PEM))
ED = SigningKey("example.com", "e", keys.ED25519_SHA256, keys.load_private_key(ED_PEM))
MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\nBody\r\n"


def dns(name: bytes, timeout: float = 5) -> bytes | None:
    records = {
        b"r._domainkey.example.com.": keys.txt_record(
            keys.RSA_SHA256, keys.public_key_b64(RSA_PEM)
        ),
        b"e._domainkey.example.com.": keys.txt_record(
            keys.ED25519_SHA256, keys.public_key_b64(ED_PEM)
        ),
    }
    found = records.get(name)
    return found.encode() if found else None


class Chunked:
    """A streamed message (transports.base.Content) read in pieces of ``size``."""

    def __init__(self, data: bytes, size: int = 5) -> None:
        self.data, self.size = data, size

    def __len__(self) -> int:
        return len(self.data)

    def isascii(self) -> bool:
        return self.data.isascii()

    def chunks(self):
        for i in range(0, len(self.data), self.size):
            yield self.data[i : i + self.size]

    def __bytes__(self) -> bytes:
        return self.data


def test_no_key_leaves_the_message_as_it_is():
    assert sign_message(MESSAGE, []) is MESSAGE


def test_a_message_without_from_is_refused():
    with pytest.raises(SigningError, match="no From header"):
        sign_message(b"To: b@example.org\r\n\r\nBody\r\n", [RSA])
    with pytest.raises(SigningError, match="no From header"):
        sign_message(b"\r\nBody only\r\n", [RSA])


def test_an_unparsable_header_is_refused():
    with pytest.raises(SigningError, match="cannot be parsed"):
        sign_message(b"From: a@example.com\r\nnot a header line\r\n\r\nBody\r\n", [RSA])


def test_a_key_of_the_wrong_kind_is_refused():
    wrong = SigningKey("example.com", "r", keys.ED25519_SHA256, RSA.private_key)
    with pytest.raises(SigningError, match="not an Ed25519 key"):
        sign_message(MESSAGE, [wrong])
    wrong = SigningKey("example.com", "e", keys.RSA_SHA256, ED.private_key)
    with pytest.raises(SigningError, match="not an RSA key"):
        sign_message(MESSAGE, [wrong])


@pytest.mark.parametrize(
    "message",
    [
        MESSAGE,
        MESSAGE.replace(b"\r\n", b"\n"),  # LF line ends, as dkimpy reads them
        b"From: a@example.com\r\nSubject: no body\r\n",  # no blank line at all
        b"From: a@example.com\r\n\r\n",  # an empty body
    ],
)
def test_forms_of_a_message_verify(message):
    signed = sign_message(message, [RSA, ED])
    checker = dkim.DKIM(signed)
    assert [checker.verify(idx=i, dnsfunc=dns) for i in (0, 1)] == [True, True]


def test_a_streamed_message_is_signed_with_its_bytes_behind():
    content = Chunked(MESSAGE * 1 + b"more\r\n" * 50)
    signed = sign_message(content, [RSA])
    assert isinstance(signed, SignedContent) and signed.content is content
    assert repr(content) in repr(signed) and len(signed) == len(bytes(signed))
    assert signed.isascii() and b"".join(signed.chunks()) == bytes(signed)
    assert dkim.verify(bytes(signed), dnsfunc=dns)


def test_a_streamed_header_past_the_bound_is_refused(monkeypatch):
    monkeypatch.setattr(signer, "MAX_HEADER_BYTES", 100)
    long_header = b"From: a@example.com\r\n" + b"X-Long: " + b"x" * 200 + b"\r\n\r\nBody\r\n"
    with pytest.raises(SigningError, match="longer than 100 bytes"):
        sign_message(Chunked(long_header, size=10), [RSA])


def test_8bit_headers_cannot_be_made_7bit_and_are_signed_as_they_are():
    message = "From: Jürgen <a@example.com>\r\nSubject: Grüße\r\n\r\nBody\r\n".encode()
    signed = sign_message(message, [RSA])
    assert signed.endswith(message)
    assert dkim.verify(signed, dnsfunc=dns)


def test_key_helpers_refuse_what_they_cannot_use():
    with pytest.raises(ValueError, match="Unknown DKIM algorithm 'dsa'"):
        keys.generate("dsa")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="must be RSA or Ed25519"):
        keys.load_private_key(ec_pem)
    assert keys.txt_strings("") == [""]
    assert keys.domain_and_parents("a.b.example.com") == [
        "a.b.example.com",
        "b.example.com",
        "example.com",
    ]
