"""The relaxed body hash (RFC 6376 3.4.4), fed a piece at a time.

dkimpy canonicalizes a body held whole in memory. A large message is read
from the database in chunks while it is sent (``delivery/content.py``); to
sign it, its body is hashed the same way, chunk by chunk, holding no more
than the line being read and a count of the empty lines seen at the end so
far. The output is byte for byte dkimpy's ``Relaxed.canonicalize_body`` of
the same body (line ends ``\\r?\\n`` read as CRLF, as dkimpy's parser
does); tests/test_dkim_body.py compares the two.
"""

from __future__ import annotations

import hashlib
import re

# Each as dkimpy's, but matching only what changes: a bare LF (not every line
# end), and a tab or a run of blanks (not every single space). The output is
# the same; a 2 KB body of prose is canonicalized several times faster.
_BARE_LF = re.compile(rb"(?<!\r)\n")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb"[\t ]{2,}|\t")
CRLF = b"\r\n"


def _canonical_lines(block: bytes) -> bytes:
    """Whole lines, relaxed: CRLF line ends, no blanks before them, runs of blanks
    made one space. Each regex runs only when a fast ``in`` test finds its case:
    most lines of most bodies need none of them."""
    if block.count(b"\n") != block.count(CRLF):
        block = _BARE_LF.sub(CRLF, block)
    if b" \r\n" in block or b"\t" in block:
        block = _TRAILING_WSP.sub(CRLF, block)
    if b"  " in block or b"\t" in block:
        block = _WSP.sub(b" ", block)
    return block


class RelaxedBodyHash:
    """SHA-256 of a body under relaxed canonicalization, fed with :meth:`update`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._rest = b""  # the line being read: no line end seen yet
        self._empty = 0  # empty lines held back: dropped if nothing follows them

    def update(self, data: bytes) -> None:
        data = self._rest + data if self._rest else data
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if cut:
            self._lines(_canonical_lines(data[:cut]))

    def _lines(self, block: bytes) -> None:
        # ``block`` is whole canonical lines. Its trailing empty lines are held
        # back; what comes before them is hashed after the ones held before.
        end, trailing = len(block), 0
        while end >= 2 and block[end - 2 : end] == CRLF:
            end -= 2
            trailing += 1
        if end:
            if self._empty:
                self._hash.update(CRLF * self._empty)
            self._hash.update(block[: end + 2])
            self._empty = trailing - 1
        else:
            self._empty += trailing

    def digest(self) -> bytes:
        """The hash; the body must not be fed any more."""
        rest = _WSP.sub(b" ", self._rest)
        if rest:  # a last line with no line end (dkimpy ends it with CRLF)
            self._lines(rest + CRLF)
        self._rest = b""
        return self._hash.digest()
