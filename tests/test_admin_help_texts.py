"""Help texts in the admin are text: a '<' in one never becomes a tag."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

pytestmark = pytest.mark.django_db


def test_the_route_add_page_shows_the_dkim_selector_help_as_text(admin_client):
    page = admin_client.get("/admin/django_smtprelay/route/add/").content.decode()
    assert "&lt;s&gt;._domainkey.&lt;d&gt;" in page
    assert "<s>" not in page
    assert 'name="_save"' in page


def test_every_help_text_of_every_admin_form_of_the_app_is_escaped():
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "django_smtprelay":
            continue
        forms = [model_admin.get_form(request)]
        inlines = model_admin.get_inline_instances(request)
        forms += [inline.get_formset(request).form for inline in inlines]
        for form in forms:
            for name, field in form.base_fields.items():
                assert "<" not in str(field.help_text), (model.__name__, name)
                checked += bool(field.help_text)
            for name, text in (form._meta.help_texts or {}).items():
                assert "<" not in str(text), (model.__name__, name)
    assert checked
