"""Model fields: an encrypted JSON field and a tag list that filters on every database."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models

from tracking.integrity import crypto


class Ciphertext(str):
    """A value as stored: decrypted lazily, on attribute access, with the row's id as AAD."""


class _EncryptedDescriptor:
    def __init__(self, field: EncryptedJSONField) -> None:
        self.field = field

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__.get(self.field.attname)
        if isinstance(value, Ciphertext):
            value = crypto.decrypt(value, self.field.aad(instance))
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedJSONField(models.TextField):
    """JSON encrypted with AES-GCM; the table, field and primary key are the associated data.

    Lookups are refused: a query on ciphertext would silently match nothing.
    """

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, self.attname, _EncryptedDescriptor(self))

    def aad(self, instance) -> str:
        return f"{instance._meta.db_table}.{self.attname}.{instance.pk}"

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname)
        if isinstance(value, Ciphertext):
            return value
        return Ciphertext(crypto.encrypt(value, self.aad(model_instance)))

    def from_db_value(self, value, expression, connection):
        return None if value is None else Ciphertext(value)

    def get_prep_value(self, value: Any):
        if value is None or isinstance(value, Ciphertext):
            return value
        raise FieldError("EncryptedJSONField values are encrypted in pre_save; got plaintext")

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(f"lookups on encrypted field are refused ({lookup_name!r})")

    def get_transform(self, name):
        raise FieldError(f"transforms on encrypted field are refused ({name!r})")

    def value_to_string(self, obj):
        return self.value_from_object(obj)


class TagListField(models.TextField):
    """A list of tags stored as ``",a,b,"`` so that "has tag" is a LIKE on any database.

    Filter with ``Activity.objects.with_tags([...])`` or ``tags__contains=",tag,"``.
    """

    # The Python-side type for django-stubs: a list of tags, not the TextField's str.
    _pyi_private_set_type: list[str]  # type: ignore[assignment]
    _pyi_private_get_type: list[str]  # type: ignore[assignment]

    def from_db_value(self, value, expression, connection):
        return self.to_python(value)

    def to_python(self, value):
        if value is None or isinstance(value, list):
            return value or []
        return [t for t in str(value).split(",") if t]

    def get_prep_value(self, value):
        if isinstance(value, list | tuple | set):
            tags = sorted({str(t).replace(",", "_") for t in value if t})
            return "," + ",".join(tags) + "," if tags else ""
        return value  # lookup operands pass through unchanged

    def value_to_string(self, obj):
        return self.get_prep_value(self.value_from_object(obj))
