"""``tracking train``: replays stored history, leaves confirmed attacks out, stores a model."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command

from tracking.models import Activity, DetectorModel
from tracking.simulator.traffic import simulate

UTC = dt_timezone.utc


def run(*args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("tracking", "train", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def stored_history(db):
    from tracking.pipeline.ingest import ingest

    records = list(simulate(users=8, days=3, seed=5, attacks=False))
    ingest(records, source="import")
    return records


def test_train_stores_a_signed_model_and_detection_uses_it(stored_history):
    code, out, _ = run("--contamination", "0.05", "--n-estimators", "20")
    assert code == 0 and "Trained isolation_forest v1" in out
    row = DetectorModel.objects.get(name="isolation_forest")
    assert row.meta["n_samples"] == Activity.objects.count()
    assert row.meta["params"]["contamination"] == 0.05 and row.meta["params"]["n_estimators"] == 20
    from tracking.detection import modelstore

    model, meta, version = modelstore.load_model("isolation_forest")
    assert version == 1 and hasattr(model, "decision_function")
    code, out, _ = run()
    assert "v2" in out


def test_confirmed_attacks_are_left_out(stored_history):
    confirmed = list(Activity.objects.order_by("timestamp")[:10].values_list("id", flat=True))
    Activity.objects.filter(id__in=confirmed).update(review_status="confirmed")
    assert run()[0] == 0
    assert DetectorModel.objects.get().meta["n_samples"] == Activity.objects.count() - 10


def test_since_and_until_limit_the_history(stored_history):
    first = Activity.objects.order_by("timestamp").first().timestamp
    cut = first + timedelta(days=1)
    assert run("--since", cut.isoformat())[0] == 0
    expected = Activity.objects.filter(timestamp__gte=cut).count()
    assert DetectorModel.objects.get().meta["n_samples"] == expected
    assert run("--until", cut.isoformat(), "--min-events", "2")[0] == 0
    assert (
        DetectorModel.objects.get(version=2).meta["n_samples"]
        == Activity.objects.count() - expected
    )


@pytest.mark.django_db
def test_not_enough_history_and_bad_options():
    code, _, err = run()
    assert code == 1 and "not enough activity" in err
    code, _, err = run("--contamination", "0.9")
    assert code == 2 and "contamination" in err
    code, _, err = run("--since", "last tuesday")
    assert code == 2 and "not a date" in err
    assert not DetectorModel.objects.exists()


def test_parse_when_spans():
    from tracking.cli.train import parse_when

    assert parse_when("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert datetime.now(UTC) - parse_when("30d") - timedelta(days=30) < timedelta(seconds=5)
    assert parse_when("2026-01-02T03:04:05+02:00") == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert parse_when("2026-01-02 03:04") == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-W01", "2026-01-02X10:00", "2026-02-30", "20260102", ""])
def test_parse_when_is_as_strict_as_the_other_cli_dates(text):
    from tracking.cli.train import parse_when

    with pytest.raises(ValueError, match="not a date"):
        parse_when(text)
