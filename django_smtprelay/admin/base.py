"""What every admin of the app shares: help texts shown as text, never as HTML.

Django's admin renders help texts with ``|safe``, so a help text such as
``<s>._domainkey.<d>`` became a strike-through tag that crossed out the rest of
the page. Help texts here are plain text: they are escaped once, for the
editable fields (model and form-declared) and for the read-only ones alike.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils.html import conditional_escape


def escaped_help_texts(model: type[models.Model], form: type[forms.BaseForm]) -> dict[str, str]:
    """Every help text of ``model`` and of ``form``'s ``Meta``, escaped (for ``help_texts=``)."""
    texts = {
        field.name: field.help_text
        for field in model._meta.get_fields()
        if getattr(field, "help_text", "")
    }
    meta = getattr(form, "_meta", None)
    texts.update(getattr(meta, "help_texts", None) or {})
    return {name: conditional_escape(text) for name, text in texts.items()}


def escape_declared_help_texts(form: type[forms.BaseForm]) -> None:
    """Escape the help texts of ``form``'s fields; escaped ones are left as they are."""
    for field in form.base_fields.values():
        if field.help_text:
            field.help_text = conditional_escape(field.help_text)


class PlainHelpTextAdmin(admin.ModelAdmin):
    """A ModelAdmin whose help texts render as text."""

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        kwargs.setdefault("help_texts", escaped_help_texts(self.model, self.form))
        form = super().get_form(request, obj, change, **kwargs)
        escape_declared_help_texts(form)
        return form


class PlainHelpTextTabularInline(admin.TabularInline):
    """A tabular inline whose help texts render as text."""

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("help_texts", escaped_help_texts(self.model, self.form))
        formset = super().get_formset(request, obj, **kwargs)
        escape_declared_help_texts(formset.form)
        return formset
