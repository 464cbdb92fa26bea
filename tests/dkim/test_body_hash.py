"""The streamed relaxed body hash equals dkimpy's canonicalization of the whole body."""

from __future__ import annotations

import hashlib
import re

from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from django_smtprelay.signing.body import RelaxedBodyHash

PIECES = [b"a", b"b", b".", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\xc3\xa9"]


def dkimpy_hash(body: bytes) -> bytes:
    # dkimpy's parser reads \r?\n as CRLF before canonicalizing.
    return hashlib.sha256(Relaxed.canonicalize_body(re.sub(rb"\r?\n", b"\r\n", body))).digest()


@settings(max_examples=800, deadline=None)
@given(
    body=st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(min_value=1, max_value=9), max_size=40),
)
def test_streamed_hash_equals_dkimpy(body, cuts):
    hasher, position = RelaxedBodyHash(), 0
    for size in [*cuts, len(body)]:
        hasher.update(body[position : position + size])
        position += size
    assert hasher.digest() == dkimpy_hash(body)


def test_known_cases():
    for body in [b"", b"\r\n", b"\r\n\r\n", b"a", b"a \r\n\r\n", b" \t\r\n x", b"a\r\r\n"]:
        hasher = RelaxedBodyHash()
        hasher.update(body)
        assert hasher.digest() == dkimpy_hash(body), body
