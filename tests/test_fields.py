"""EncryptedJSONField and TagListField behaviour through the model."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldError
from django.db import connection

from tracking.fields import Ciphertext
from tracking.models import Activity

pytestmark = pytest.mark.django_db


def test_lazy_decrypt_and_round_trip():
    a = Activity.objects.create(
        type="API", headers={"Accept": "é/ü"}, params={"n": [1, {"x": None}]}
    )
    b = Activity.objects.get(pk=a.pk)
    assert isinstance(b.__dict__["headers"], Ciphertext)  # not decrypted until read
    assert b.headers == {"Accept": "é/ü"} and b.params == {"n": [1, {"x": None}]}


def test_plaintext_never_reaches_the_database():
    a = Activity.objects.create(type="API", headers={"X-Thing": "plain-value-123"})
    with connection.cursor() as cur:
        cur.execute(
            "SELECT headers FROM tracking_activity WHERE id = %s",
            [a.id.hex if connection.vendor == "sqlite" else a.id],
        )
        (stored,) = cur.fetchone()
    assert stored.startswith("v1:") and "plain-value-123" not in stored


def test_update_with_plaintext_refused():
    a = Activity.objects.create(type="API")
    with pytest.raises(FieldError):
        Activity.objects.filter(pk=a.pk).update(headers={"a": 1})


def test_isnull_lookup_allowed_others_refused():
    assert Activity.objects.filter(headers__isnull=True).count() == 0
    with pytest.raises(FieldError):
        Activity.objects.filter(params__icontains="x").count()


def test_tags_sorted_unique_and_comma_safe():
    a = Activity.objects.create(type="API", tags=["b", "a", "b", "x,y"])
    assert Activity.objects.get(pk=a.pk).tags == ["a", "b", "x_y"]
