"""Why a message found no route: each route it could not use, and why the others do not take it.

A deferred message's error names every route, so that "relay-b is disabled"
is read on the message's page, not guessed: ``relay-a: circuit open until
12:05:00 UTC (5 route faults in a row; ...); relay-b: rate limit, next send
in 40s; relay-c (disabled) and relay-d (sender domains do not match) do not
take it``. Only messages with no route left get here; a delivered one never
does.
"""

from __future__ import annotations

from ..routing import Router
from .state import _Part

Match = tuple[str, str, str, str, int]


def do_not_take(reasons: list[tuple[str, str]]) -> str:
    """``[("c", "disabled"), ("d", "...")]`` -> ``"c (disabled) and d (...) do not take it"``."""
    names = [f"{name} ({why})" for name, why in reasons]
    if len(names) == 1:
        return f"{names[0]} does not take it"
    return f"{', '.join(names[:-1])} and {names[-1]} do not take it"


def no_route_takes(router: Router, match: Match) -> str:
    """The error of a message that no route matches at all."""
    hint = match[0]
    head = "no enabled route takes this message" + (f" (it asks for {hint!r})" if hint else "")
    others = _why_not(router, match)
    return f"{head}: {do_not_take(others)}" if others else head


class NoRouteLeft:
    """The error of parts that tried their routes and have none left, per batch.

    The routes that do not match are read once per kind of message (the
    disabled ones from the database), however many messages a dead relay
    defers.
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self._others: dict[Match, str] = {}

    def __call__(self, part: _Part) -> str:
        tried = list(part.unusable or ())
        others = self._others.get(part.match)
        if others is None:
            reasons = _why_not(self._router, part.match)
            others = self._others[part.match] = do_not_take(reasons) if reasons else ""
        return "; ".join([*tried, others] if others else tried)


def _why_not(router: Router, match: Match) -> list[tuple[str, str]]:
    hint, sender_domain, from_domain, recipient_domain, size = match
    return router.why_not(
        hint,
        sender_domain=sender_domain,
        from_domain=from_domain,
        recipient_domain=recipient_domain,
        size=size,
    )
