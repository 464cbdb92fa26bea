"""A route's stored password never follows a change of destination it was not typed for."""

from __future__ import annotations

from typing import Any

import pytest

from django_smtprelay.models import Route

SECRET = "Typed-For-The-Old-Relay"
pytestmark = pytest.mark.django_db


@pytest.fixture
def route(make_route: Any, refused_port: int) -> Route:
    return make_route(port=refused_port, password=SECRET, username="relayuser")


def form_of(route: Route, **changes: Any) -> dict[str, Any]:
    """The route's change form as the browser posts it, with ``changes`` applied."""
    data: dict[str, Any] = {
        "name": route.name,
        "kind": route.kind,
        "enabled": "on",
        "priority": route.priority,
        "host": route.host,
        "port": route.port,
        "security": route.security,
        "timeout": route.timeout,
        "username": route.username,
        "password": "",
        "weight": route.weight,
    }
    for flag in ("verify_certificate", "allow_plaintext_auth"):
        if getattr(route, flag):
            data[flag] = "on"
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def url(route: Route) -> str:
    return f"/admin/django_smtprelay/route/{route.pk}/change/"


@pytest.mark.parametrize(
    "change",
    [
        {"host": "relay.elsewhere.example"},
        {"port": 2525},
        {"security": Route.Security.TLS},
        {"verify_certificate": None},
        {"allow_plaintext_auth": "on"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_new_destination_with_the_password_left_blank_is_refused(admin_client, route, change):
    before = Route.objects.values().get(pk=route.pk)
    response = admin_client.post(url(route), form_of(route, **change))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "The destination changed" in " ".join(errors["password"])
    assert "type the password again, or clear it" in " ".join(errors["password"])
    assert Route.objects.values().get(pk=route.pk) == before
    assert SECRET not in response.content.decode()


def test_a_new_destination_takes_the_password_typed_with_it(admin_client, route):
    response = admin_client.post(
        url(route), form_of(route, host="relay.elsewhere.example", password="typed-for-new")
    )
    assert response.status_code == 302
    saved = Route.objects.get(pk=route.pk)
    assert (saved.host, saved.password) == ("relay.elsewhere.example", "typed-for-new")


def test_a_new_destination_with_the_password_cleared_is_saved_without_one(admin_client, route):
    response = admin_client.post(
        url(route), form_of(route, host="relay.elsewhere.example", clear_password="on")
    )
    assert response.status_code == 302
    saved = Route.objects.get(pk=route.pk)
    assert (saved.host, saved.has_password) == ("relay.elsewhere.example", False)


def test_other_changes_keep_the_stored_password(admin_client, route):
    response = admin_client.post(url(route), form_of(route, name="renamed", priority=7))
    assert response.status_code == 302
    saved = Route.objects.get(pk=route.pk)
    assert (saved.name, saved.priority, saved.password) == ("renamed", 7, SECRET)


def test_a_route_without_a_password_changes_destination_freely(
    admin_client, make_route, refused_port
):
    route = make_route(port=refused_port)
    response = admin_client.post(url(route), form_of(route, host="relay.elsewhere.example"))
    assert response.status_code == 302
    assert Route.objects.get(pk=route.pk).host == "relay.elsewhere.example"
