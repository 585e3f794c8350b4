"""Live events (fresh ids) skip the lookup of stored ids, and stay idempotent anyway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracking.events import Event
from tracking.ingest import ingest
from tracking.models import Activity


def _event(**kw) -> Event:
    base = dict(
        type="API",
        timestamp=datetime.now(UTC),
        username="bob",
        ip_address="81.2.69.142",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/115.0",
        endpoint="/api/items/",
        method="GET",
        status=200,
        headers={"Accept": "*/*"},
        params={"query": {"page": "1", "token": "t0p"}},
    )
    base.update(kw)
    return Event(**base)


@pytest.mark.django_db
def test_a_repeated_live_event_is_a_duplicate_not_a_rejection():
    e = _event()
    assert ingest([e], assume_new=True).stored == 1
    again = ingest([e], assume_new=True)
    assert (again.stored, again.duplicates, again.rejected, again.failed) == (0, 1, 0, 0)
    mixed = ingest([e, _event(endpoint="/other/")], assume_new=True)
    assert (mixed.stored, mixed.duplicates, mixed.rejected) == (1, 1, 0)
    assert Activity.objects.count() == 2


@pytest.mark.django_db
def test_a_logged_in_live_request_costs_few_queries(django_user_model, settings):
    """No stored-id lookup, one user query (the id resolves: no name query), no sealing, no
    model-version or look-back query for an API call."""
    settings.TRACKING_SEAL_INTERVAL = 3600.0
    user = django_user_model.objects.create(username="bob")
    ingest([_event(user_id=user.pk)], assume_new=True)  # warm: profile row, model version
    with CaptureQueriesContext(connection) as ctx:
        assert ingest([_event(user_id=user.pk)], assume_new=True).stored == 1
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert not any('"tracking_activity"."id" IN' in q for q in sqls)  # no lookup
    assert sum("auth_user" in q for q in sqls) == 1
    assert not any("tracking_seal" in q or "tracking_detectormodel" in q for q in sqls)
    assert len(sqls) <= 12, sqls
    assert Activity.objects.filter(user_id=user.pk).count() == 2
