"""A schemathesis run of the OpenAPI schema (api/tracking/schema/) against the API, in-process
through the WSGI app, authenticated as staff with a DRF token: no 5xx for any generated input.
Bounded examples per operation so the whole run stays well under a minute."""

from contextlib import contextmanager

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from tracking.integrity.sealing import seal_pending
from tracking.testing.factories import make_activities

EXAMPLES = 15


@pytest.fixture
def staff_token(staff_user):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=staff_user).key


@contextmanager
def keep_connections():
    """Like Django's test client: the WSGI handler must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(db, staff_user, client):
    make_activities(5)
    seal_pending()
    client.force_login(staff_user)
    resp = client.get("/api/tracking/schema/", {"format": "json"})
    assert resp.status_code == 200, resp.content[:500]
    document = resp.json()
    assert document["paths"], "the schema documents the API"
    schema = schemathesis.openapi.from_dict(document)
    schema.app = WSGIHandler()
    return schema


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis' own pytest plugin (``from_fixture``/``parametrize``) does not run under pytest 9
# (it reads ``Function._nodeid``), so its per-operation hypothesis strategies are driven here.
def test_api_never_answers_5xx(api_schema, staff_token, settings):
    settings.TRACKING_THROTTLE_RATES = {"burst": "100000/min", "sustained": "100000/hour"}
    headers = {"Authorization": f"Token {staff_token}"}
    seen = []
    statuses: list[int] = []
    for operation in operations(api_schema):
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @hsettings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            cache.clear()
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r} -> "
                f"{response.status_code}: {response.text[:300]}"
            )

        with keep_connections():
            run()
    assert any(s.startswith("DELETE") for s in seen) and any(s.startswith("PATCH") for s in seen)
    # Authenticated for real: generated requests reached the views, not only the 401 wall.
    assert statuses.count(200) >= 10 and 401 not in statuses, sorted(set(statuses))


def test_schema_covers_every_endpoint(api_schema):
    text = " ".join(op.path for op in operations(api_schema))
    for fragment in ("activities/", "stats/", "export/", "delete/", "flag/"):
        assert fragment in text, (fragment, text)
