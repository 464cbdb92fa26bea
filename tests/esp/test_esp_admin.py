"""ESP routes in the admin: the ESP from anymail's list, its options checked, secrets write-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_smtprelay import esps
from django_smtprelay.models import Route

pytestmark = pytest.mark.django_db

TOKEN = "pm-Typed-Token-1234"
ADD = "/admin/django_smtprelay/route/add/"


def url(route: Route) -> str:
    return f"/admin/django_smtprelay/route/{route.pk}/change/"


def form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "postmark",
        "kind": "anymail",
        "esp": "postmark",
        "enabled": "on",
        "priority": 20,
        "host": "",
        "port": 587,
        "security": "starttls",
        "verify_certificate": "on",
        "timeout": 30,
        "weight": 1,
        "esp_settings_text": "api_url = https://api.postmark.example/\nmessage_stream = outbound",
        "esp_secrets_text": f"server_token = {TOKEN}",
    }
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def errors_of(response: Any) -> str:
    return str(response.context["adminform"].form.errors)


def test_the_esp_choices_are_the_backends_anymail_ships(admin_client):
    import anymail.backends

    response = admin_client.get(ADD)
    choices = dict(response.context["adminform"].form.fields["esp"].choices)
    assert {"postmark", "mailgun", "sendgrid", "amazon_ses", "resend"} <= set(choices)
    assert "test" not in choices and "console" not in choices
    assert "sendinblue" not in choices, "an old name of Brevo is not a second ESP"
    assert set(choices) - {""} == set(esps.available())
    folder = Path(anymail.backends.__path__[0])
    assert all((folder / f"{name}.py").exists() for name in esps.available())


def test_an_esp_route_is_created_with_its_secret_sealed_and_never_shown(admin_client):
    response = admin_client.post(ADD, form())
    assert response.status_code == 302, errors_of(response)
    route = Route.objects.get(name="postmark")
    assert route.esp_settings == {
        "api_url": "https://api.postmark.example/",
        "message_stream": "outbound",
    }
    assert route.esp_options["server_token"] == TOKEN
    assert TOKEN not in route.esp_secrets_ciphertext
    page = admin_client.get(url(route)).content.decode()
    assert TOKEN not in page
    assert "server_token" in page, "the names of the stored secrets are shown"
    assert "message_stream = outbound" in page


def test_a_missing_credential_is_refused_with_the_option_named(admin_client):
    response = admin_client.post(ADD, form(esp_secrets_text=""))
    assert response.status_code == 200
    assert "Postmark needs server_token: type" in errors_of(response)
    assert not Route.objects.exists()


def test_a_misspelt_option_is_refused_with_the_ones_the_esp_takes(admin_client):
    response = admin_client.post(
        ADD, form(esp_settings_text="api_url = https://x.example/\nmesage_stream = outbound")
    )
    assert response.status_code == 200
    text = errors_of(response)
    assert "mesage_stream" in text and "message_stream" in text


def test_a_secret_typed_in_the_visible_options_is_refused(admin_client):
    response = admin_client.post(ADD, form(esp_settings_text=f"server_token = {TOKEN}"))
    assert response.status_code == 200
    assert "server_token is a secret" in errors_of(response)


def test_a_new_api_url_asks_for_the_secret_again(admin_client):
    admin_client.post(ADD, form())
    route = Route.objects.get()
    before = Route.objects.values().get(pk=route.pk)
    response = admin_client.post(
        url(route),
        form(esp_settings_text="api_url = https://elsewhere.example/", esp_secrets_text=""),
    )
    assert response.status_code == 200
    assert "type the secrets again" in errors_of(response)
    assert Route.objects.values().get(pk=route.pk) == before
    retyped = admin_client.post(
        url(route),
        form(
            esp_settings_text="api_url = https://elsewhere.example/",
            esp_secrets_text="server_token = new",
        ),
    )
    assert retyped.status_code == 302, errors_of(retyped)
    assert Route.objects.get().esp_options["server_token"] == "new"


def test_other_changes_keep_the_stored_secret(admin_client):
    admin_client.post(ADD, form())
    route = Route.objects.get()
    response = admin_client.post(
        url(route),
        form(
            esp_secrets_text="",
            priority=5,
            esp_settings_text=(
                "api_url = https://api.postmark.example/\nmessage_stream = broadcast"
            ),
        ),
    )
    assert response.status_code == 302, errors_of(response)
    saved = Route.objects.get()
    assert saved.priority == 5
    assert saved.esp_options == {
        "api_url": "https://api.postmark.example/",
        "message_stream": "broadcast",
        "server_token": TOKEN,
    }


def test_an_smtp_route_names_the_esp_behind_its_endpoint_without_retyping_its_password(
    admin_client, make_route, refused_port
):
    route = make_route(port=refused_port, password="relay-pass", username="u")
    data = form(
        name=route.name,
        kind="smtp",
        esp="sendgrid",
        host=route.host,
        port=route.port,
        security=route.security,
        username="u",
        esp_settings_text="",
        esp_secrets_text="",
        verify_certificate="on",
    )
    response = admin_client.post(url(route), data)
    assert response.status_code == 302, errors_of(response)
    saved = Route.objects.get(pk=route.pk)
    assert (saved.esp, saved.password) == ("sendgrid", "relay-pass")


def test_an_smtp_route_still_needs_a_host(admin_client):
    response = admin_client.post(
        ADD, form(kind="smtp", esp="", esp_settings_text="", esp_secrets_text="")
    )
    assert response.status_code == 200
    assert "host" in response.context["adminform"].form.errors


def test_the_route_tools_check_and_send_through_an_esp_route(admin_client, esp_server):
    server = esp_server("postmark")
    route = Route.objects.create(
        name="pm",
        kind="anymail",
        esp="postmark",
        esp_options={"server_token": TOKEN, "api_url": server.url},
    )
    base = url(route).replace("change/", "")
    checked = admin_client.post(base + "test-connection/")
    assert checked.context["result"].ok, checked.context["result"].summary
    assert server.requests == [], "checking the options makes no request"
    sent = admin_client.post(
        base + "send-test-message/", {"recipient": "me@example.com", "sender": "a@example.com"}
    )
    result = sent.context["result"]
    assert result.ok, result.summary
    assert len(server.requests) == 1
    assert server.requests[0].json()["To"] == "me@example.com"
    assert TOKEN not in sent.content.decode()


def test_the_route_tools_say_what_is_missing_on_an_esp_route(admin_client, esp_server):
    server = esp_server("postmark")
    route = Route.objects.create(
        name="pm", kind="anymail", esp="postmark", esp_options={"api_url": server.url}
    )
    base = url(route).replace("change/", "")
    result = admin_client.post(base + "test-connection/").context["result"]
    assert not result.ok
    assert "server_token" in result.summary
