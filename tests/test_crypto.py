"""Field encryption: clear errors with wrong keys, no swapping, no lookups, key rotation."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection

from tracking.events import Event
from tracking.integrity import crypto
from tracking.integrity import macs as integrity
from tracking.models import Activity
from tracking.pipeline.ingest import ingest

pytestmark = pytest.mark.django_db

NEW_KEY = "bmV3LWVuY3J5cHRpb24ta2V5LTAwMDAwMDAwMDAwMDA="


def store(n=1, **kw):
    res = ingest(
        [
            Event(type="API", headers={"Accept": f"text/{i}"}, params={"query": {"q": i}}, **kw)
            for i in range(n)
        ]
    )
    return [Activity.objects.get(id=i) for i in res.ids]


def raw(pk, column):
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {column} FROM tracking_activity WHERE id = %s",
            [pk.hex if connection.vendor == "sqlite" else pk],
        )
        return cur.fetchone()[0]


def test_wrong_key_raises_clear_error(settings):
    (row,) = store()
    settings.TRACKING_ENCRYPTION_KEYS = [NEW_KEY]
    fresh = Activity.objects.get(pk=row.pk)
    with pytest.raises(crypto.DecryptionError, match="no configured key"):
        fresh.headers  # noqa: B018


def test_same_key_id_wrong_material_fails_authentication():
    (row,) = store()
    token = raw(row.pk, "headers")
    kid = crypto.token_key_id(token)
    body = token.split(":", 2)[2]
    tampered = f"v1:{kid}:{body[:-4]}AAAA"
    with pytest.raises(crypto.DecryptionError, match="authentication"):
        crypto.decrypt(tampered, f"tracking_activity.headers.{row.pk}")


def test_ciphertext_swapped_between_rows_or_fields_fails():
    a, b = store(2)
    with connection.cursor() as cur:
        ident = b.pk.hex if connection.vendor == "sqlite" else b.pk
        cur.execute(
            "UPDATE tracking_activity SET headers = %s WHERE id = %s", [raw(a.pk, "headers"), ident]
        )
    with pytest.raises(crypto.DecryptionError):
        Activity.objects.get(pk=b.pk).headers  # noqa: B018
    with connection.cursor() as cur:
        ident = a.pk.hex if connection.vendor == "sqlite" else a.pk
        cur.execute(
            "UPDATE tracking_activity SET params = %s WHERE id = %s", [raw(a.pk, "headers"), ident]
        )
    with pytest.raises(crypto.DecryptionError):
        Activity.objects.get(pk=a.pk).params  # noqa: B018


def test_lookups_refused():
    with pytest.raises(FieldError, match="refused"):
        list(Activity.objects.filter(headers__contains="x"))
    with pytest.raises(FieldError):
        list(Activity.objects.filter(params="x"))


def test_reencrypt_rotates_and_rows_keep_verifying(settings):
    rows = store(3)
    expected = {r.pk: (r.headers, r.params) for r in rows}
    old_key = settings.TRACKING_ENCRYPTION_KEYS[0]
    settings.TRACKING_ENCRYPTION_KEYS = [NEW_KEY, old_key]
    new_id = crypto.current_key_id()
    call_command("tracking", "reencrypt", "--batch-size", "2")
    for row in rows:
        assert crypto.token_key_id(raw(row.pk, "headers")) == new_id
        assert crypto.token_key_id(raw(row.pk, "params")) == new_id
    settings.TRACKING_ENCRYPTION_KEYS = [NEW_KEY]  # the old key can go now
    for row in rows:
        fresh = Activity.objects.get(pk=row.pk)
        assert (fresh.headers, fresh.params) == expected[row.pk]
        assert integrity.row_ok(fresh)
    from io import StringIO

    out = StringIO()
    call_command("tracking", "reencrypt", stdout=out)
    assert "already current 3" in out.getvalue()


def test_reencrypt_reports_unreadable(settings):
    store(1)
    settings.TRACKING_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(SystemExit):
        call_command("tracking", "reencrypt")


def test_keygen_prints_valid_key():
    from io import StringIO

    out = StringIO()
    call_command("tracking", "keygen", stdout=out)
    assert len(crypto.decode_key(out.getvalue().strip())) == 32
