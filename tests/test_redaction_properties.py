"""Property-based: no configured sensitive key's value ever reaches the database, whatever the
nesting, the position or the case of the key. Recorded through the real path (@track)."""

import json
import string
from urllib.parse import urlencode

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracking.models import Activity
from tracking.redaction import redact_headers, redact_params

pytestmark = pytest.mark.django_db

SENSITIVE = ["password", "token", "secret"]  # tests/settings.py SENSITIVE_FIELDS
URL = "/t/hostile/"


def random_case(word: str):
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))
    )


# A sensitive key: a configured name in random case, maybe inside a longer key.
sensitive_keys = st.builds(
    lambda pre, word, post: pre + word + post,
    st.sampled_from(["", "new_", "X-", "old", "user."]),
    st.sampled_from(SENSITIVE).flatmap(random_case),
    st.sampled_from(["", "_confirm", "-Id", "2", "Hash"]),
)
# Innocent keys cannot contain a sensitive word (digits and a few letters only).
plain_keys = st.text(alphabet="abcdxyz0123456789_", min_size=1, max_size=6)
secrets_ = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=24).map(
    lambda s: "S3CR3T" + s
)


def documents(secret: str):
    """Nested JSON where ``secret`` sits only under sensitive keys, at any depth."""
    leaf = st.one_of(st.integers(), st.text(alphabet="abc ", max_size=5), st.booleans(), st.none())
    hidden = st.builds(
        lambda k, v: {k: v},
        sensitive_keys,
        st.one_of(
            st.just(secret),
            st.lists(st.just(secret), min_size=1, max_size=3),
            st.just({"inner": secret}),
        ),
    )

    def extend(children):
        return st.one_of(
            st.dictionaries(plain_keys, children, max_size=3),
            st.lists(children, max_size=3),
            st.builds(
                lambda d, h: {**d, **h}, st.dictionaries(plain_keys, children, max_size=2), hidden
            ),
        )

    return st.recursive(st.one_of(leaf, hidden), extend, max_leaves=12).map(
        lambda doc: {"doc": doc}
    )


@st.composite
def payloads(draw):
    secret = draw(secrets_)
    doc = draw(documents(secret))
    # Make sure the secret is in there at least once, at a random depth.
    path = draw(st.lists(plain_keys, max_size=6))
    key = draw(sensitive_keys)
    node = doc
    for p in path:
        node = node.setdefault(p, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[key] = secret
    else:
        doc[key] = secret
    return secret, doc, draw(sensitive_keys), draw(sensitive_keys)


def raw_row_text() -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM tracking_activity")
        return json.dumps([[str(c) for c in row] for row in cur.fetchall()])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads())
def test_secret_values_never_reach_the_database(client, payload):
    secret, doc, query_key, header_key = payload
    Activity.objects.all().delete()
    header_name = "HTTP_" + header_key.upper().replace("-", "_").replace(".", "_")
    resp = client.post(
        URL + "?" + urlencode({query_key: secret, "page": "1"}),
        data=json.dumps(doc),
        content_type="application/json",
        **{header_name: secret},
    )
    assert resp.status_code == 200
    row = Activity.objects.get()
    assert secret not in raw_row_text()
    assert secret not in json.dumps(row.params) and secret not in json.dumps(row.headers)
    assert secret not in row.user_agent + row.endpoint + row.forwarded_for
    assert "[REDACTED]" in json.dumps(row.params)
    assert row.params["query"]["page"] == "1"  # innocent values are kept


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secrets_, sensitive_keys)
def test_secret_in_a_form_body_never_reaches_the_database(client, secret, key):
    Activity.objects.all().delete()
    resp = client.post(URL, data={key: secret, "name": "ok"})
    assert resp.status_code == 200
    row = Activity.objects.get()
    assert secret not in raw_row_text()
    assert row.params["body"]["name"] == "ok"
    assert secret not in json.dumps(row.params)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_redaction_functions_remove_every_secret(payload):
    secret, doc, query_key, header_key = payload
    out = redact_params({"query": {query_key: secret}, "body": doc})
    assert secret not in json.dumps(out)
    assert secret not in json.dumps(redact_headers({header_key: secret, "Accept": "x"}))
    # Idempotent: redacting again changes nothing (the ingest step re-applies it).
    assert redact_params(out) == out
