"""No secret and no plaintext header value in the raw database bytes (SQLite file, PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import connection

from tracking.models import Activity

SECRETS = ["hunter2-very-secret", "tok-4f8a9c1e55", "sk_live_abcdef123456", "4111111111111111"]
HEADER_VALUES = ["Mozilla-plaintext-agent-XYZ", "Bearer abcdef.jwt.value", "csrftoken=zzz999"]


def _record(client):
    resp = client.post(
        "/t/rec/login/?api_token=tok-4f8a9c1e55",
        data=json.dumps(
            {
                "password": "hunter2-very-secret",
                "card_number": "4111111111111111",
                "profile": {"client_secret": "sk_live_abcdef123456"},
            }
        ),
        content_type="application/json",
        HTTP_X_CUSTOM_HEADER="Mozilla-plaintext-agent-XYZ",
        HTTP_AUTHORIZATION="Bearer abcdef.jwt.value",
        HTTP_COOKIE="csrftoken=zzz999",
    )
    assert resp.status_code == 200
    a = Activity.objects.get()
    # Decrypted through the model: redacted secrets, kept (encrypted) header value.
    assert a.headers["X-Custom-Header"] == "Mozilla-plaintext-agent-XYZ"
    assert a.params["body"]["password"] == "[REDACTED]"
    return a


@pytest.mark.django_db(transaction=True)
def test_raw_database_bytes_hold_no_secret(client):
    a = _record(client)
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(connection.settings_dict["NAME"])
        blobs = [path.read_bytes()]
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            blobs.append(wal.read_bytes())
        raw = b"".join(blobs)
        assert str(a.id).replace("-", "").encode() in raw or a.endpoint.encode() in raw
    else:
        with connection.cursor() as cur:
            cur.execute("SELECT t::text FROM tracking_activity AS t")
            rows = [r[0] for r in cur.fetchall()]
            buf = []
            with cur.copy("COPY (SELECT * FROM tracking_activity) TO STDOUT") as copy:
                for chunk in copy:
                    buf.append(bytes(chunk))
        raw = "\n".join(rows).encode() + b"".join(buf)
        assert a.endpoint.encode() in raw  # the search really looked at the row
    for secret in SECRETS + HEADER_VALUES:
        assert secret.encode() not in raw, secret
