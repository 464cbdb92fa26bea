"""anymail's ``tracking`` and ``inbound`` signals -> :mod:`.apply` and :mod:`.dsn`.

Events posted to a route's own webhook URL know their route, and are handed
to the post's pending work (:mod:`.group` commits it once the view returns);
events from a site's own anymail webhook URLs are matched by the ESP's name
alone and applied at once.
"""

from __future__ import annotations

from typing import Any

from .context import current_route, pending_work


def _context(esp_name: str) -> tuple[str, int | None]:
    from .esps import BY_ANYMAIL_NAME

    route = current_route.get()
    if route is not None:
        return route.esp, route.pk
    return BY_ANYMAIL_NAME.get(esp_name, str(esp_name or "").lower().replace(" ", "_")), None


def on_tracking(sender: Any, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    from . import apply as applying  # imported on first use: start-up stays light

    esp, route_pk = _context(esp_name)
    ours = applying.from_anymail(event, esp)
    work = pending_work.get()
    if work is None:
        applying.apply(ours, route_pk=route_pk)
    else:  # a route's webhook post: applied with the posts arriving together
        work.append(applying.Applying(ours, route_pk))


def on_inbound(sender: Any, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    from . import dsn

    message = getattr(event, "message", None)
    if message is None:
        return
    report = dsn.parse(message)
    if report is None:
        return  # ordinary inbound mail: the site's own receivers handle it
    esp, route_pk = _context(esp_name)
    dsn.apply_report(report, esp=esp, route_pk=route_pk)


def connect() -> None:
    from anymail.signals import inbound, tracking

    tracking.connect(on_tracking, dispatch_uid="django_smtprelay.tracking")
    inbound.connect(on_inbound, dispatch_uid="django_smtprelay.inbound")
