"""The workload: N messages, one recipient each, a subject and a 2 KB text body."""

from __future__ import annotations

SENDER = "newsletter@example.com"
BODY_BYTES = 2048


def _body() -> str:
    line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"
    text = line * (BODY_BYTES // len(line) + 1)
    return text[: BODY_BYTES - 1] + "\n"


BODY = _body()


def recipients(n: int) -> list[str]:
    return [f"user{i}@example.com" for i in range(n)]


def datatuples(n: int) -> list[tuple[str, str, str, list[str]]]:
    """``send_mass_mail`` input: (subject, body, from, [to]) per message."""
    return [(f"Newsletter #{i}", BODY, SENDER, [to]) for i, to in enumerate(recipients(n))]
