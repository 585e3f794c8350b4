"""Live events (fresh ids) skip the lookup of stored ids, and stay idempotent anyway."""

from __future__ import annotations

from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracking.models import Activity
from tracking.pipeline.ingest import ingest

UTC = dt_timezone.utc


def _deleted_user_pk(model, username: str):
    """The id a request carried for a user deleted before its event was written."""
    user = model.objects.create(username=username)
    pk = user.pk
    user.delete()
    return pk


@pytest.mark.django_db
def test_a_repeated_live_event_is_a_duplicate_not_a_rejection(make_event):
    e = make_event()
    assert ingest([e], assume_new=True).stored == 1
    again = ingest([e], assume_new=True)
    assert (again.stored, again.duplicates, again.rejected, again.failed) == (0, 1, 0, 0)
    mixed = ingest([e, make_event(endpoint="/other/")], assume_new=True)
    assert (mixed.stored, mixed.duplicates, mixed.rejected) == (1, 1, 0)
    assert Activity.objects.count() == 2


@pytest.mark.django_db
def test_a_logged_in_live_request_costs_few_queries(django_user_model, settings, make_event):
    """No stored-id lookup, no user query (the request's authenticated user is trusted; the
    foreign key catches one deleted since), no sealing, no model-version or look-back query
    for an API call."""
    settings.TRACKING_SEAL_INTERVAL = 3600.0
    user = django_user_model.objects.create(username="bob")
    ingest([make_event(user_id=user.pk)], assume_new=True)  # warm: profile row, model version
    with CaptureQueriesContext(connection) as ctx:
        assert ingest([make_event(user_id=user.pk)], assume_new=True).stored == 1
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert not any('"tracking_activity"."id" IN' in q for q in sqls)  # no lookup
    assert not any("auth_user" in q for q in sqls)
    assert not any("tracking_seal" in q or "tracking_detectormodel" in q for q in sqls)
    assert len(sqls) <= 12, sqls
    assert Activity.objects.filter(user_id=user.pk).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_live_event_of_a_user_deleted_since_is_kept_without_the_user(
    django_user_model, make_event
):
    """The trusted id fails the foreign key at commit: the batch is resolved against the user
    table and written again, nothing is rejected and the other events keep their users."""
    alive = django_user_model.objects.create(username="alive")
    gone_pk = _deleted_user_pk(django_user_model, "gone")
    events = [
        make_event(user_id=alive.pk, username="alive"),
        make_event(user_id=gone_pk, username="gone", endpoint="/x/"),
        make_event(username="alive", endpoint="/y/"),
    ]
    result = ingest(events, assume_new=True)
    assert (result.stored, result.rejected, result.failed, result.duplicates) == (3, 0, 0, 0)
    rows = {a.endpoint: a for a in Activity.objects.all()}
    assert rows["/api/items/"].user_id == alive.pk
    assert rows["/x/"].user_id is None and rows["/x/"].username == "gone"
    assert rows["/y/"].user_id == alive.pk  # resolved by name: it has no id
    from tracking.integrity.sealing import seal_pending
    from tracking.integrity.verify import verify

    seal_pending()
    assert verify().ok  # the MAC covers the user as written


@pytest.mark.django_db(transaction=True)
def test_a_retried_batch_is_judged_afresh(django_user_model, monkeypatch, make_event):
    """Verdicts of a rolled-back attempt do not stick to the events written again."""
    import tracking.pipeline.ingest as ingest_module

    gone_pk = _deleted_user_pk(django_user_model, "gone2")
    seen = []
    real = ingest_module._write

    def spy(pairs, **kwargs):
        seen.append([list(a.tags or []) for _, a in pairs])
        return real(pairs, **kwargs)

    def detect(acts, **kwargs):
        for a in acts:
            a.tags = [*(a.tags or []), "judged"]
        return []

    monkeypatch.setattr(ingest_module, "_write", spy)
    monkeypatch.setattr(ingest_module, "_detect", detect)
    assert ingest([make_event(user_id=gone_pk, username="gone2")], assume_new=True).stored == 1
    assert seen == [[[]], [[]]]  # the second attempt starts from the event, not the first try
    assert Activity.objects.get().tags == ["judged"]
