"""Model fields of the queue."""

from __future__ import annotations

from typing import Any

from django.db import models

from ..envelope import address_domain


class AddressDomainField(models.CharField):
    """The lower-case, IDNA-encoded domain of the model's ``address``, kept in a
    column of its own so that "every recipient at a domain" is an index range,
    not a scan of every address's last characters.

    The ORM sets it whenever it writes the row (``save()`` and
    ``bulk_create()`` both call ``pre_save``); the queue's own bulk writers
    (``models.store``) write it themselves with the same function.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 253)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        value = address_domain(model_instance.address)
        setattr(model_instance, self.attname, value)
        return value
