"""`tracking export`: every field, filters, formats, files; export → import → export is equal."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from tracking.exporting import EXPORT_FIELDS
from tracking.models import Activity, Finding
from tracking.testing import traffic

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


def run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("tracking", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def _load(tmp_path, records, name="in.ndjson"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, err = run("import", str(path))
    assert code == 0, err
    return out


@pytest.fixture
def seeded(tmp_path, django_user_model):
    """Simulated traffic (with one known user) plus a few flagged, tagged, odd records."""
    users = traffic.population(6, 1, 0)
    django_user_model.objects.create_user(users[0].username, "", "pw")
    records = list(traffic.simulate(users=6, days=1, start=T0, seed=0))
    extra = [
        {
            "timestamp": (T0 + timedelta(hours=3)).isoformat(),
            "type": "PAYMENT",
            "ip_address": "193.32.1.9",
            "endpoint": "/payments/",
            "method": "POST",
            "status": 200,
            "username": users[0].username,
            "flagged": True,
            "tags": ["takeover", "new_country"],
            "risk_score": 0.93,
            "severity": "high",
            "review_status": "confirmed",
            "findings": [
                {
                    "detector": "impossible_travel",
                    "tag": "impossible_travel",
                    "score": 0.9,
                    "severity": "high",
                    "reason": "London to Moscow in 5 min",
                }
            ],
            "params": {"note": '=HYPERLINK("x")', "amount": "-5"},
            "user_agent": '=HYPERLINK("x")é\u2028x',
        },
        {
            "timestamp": (T0 + timedelta(hours=4)).isoformat(),
            "type": "OTHER",
            "ip_address": "10.0.0.1",
            "endpoint": "/",
            "method": "GET",
            "status": None,
            "duration": None,
            "headers": {},
            "params": {},
        },
    ]
    _load(tmp_path, records + extra)
    return records


def _export(tmp_path, fmt, *args):
    path = tmp_path / f"out-{fmt}-{len(list(tmp_path.iterdir()))}.{fmt}"
    code, _, err = run("export", "--format", fmt, "-o", str(path), *args)
    assert code == 0, err
    return path


def _records(path, fmt):
    text = path.read_text(encoding="utf-8")
    if fmt == "ndjson":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "json":
        return json.loads(text)
    return list(csv.DictReader(io.StringIO(text)))


def _wipe():
    Finding.objects.all().delete()
    Activity.objects.all().delete()


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_round_trip_is_equal(tmp_path, seeded, fmt):
    first = _export(tmp_path, fmt)
    before = _records(first, fmt)
    assert len(before) == Activity.objects.count() == len(seeded) + 2
    _wipe()
    code, out, err = run("import", str(first))
    assert code == 0, err
    assert f"{len(before)} imported, 0 already present, 0 bad lines" in out
    second = _export(tmp_path, fmt)
    assert second.read_text() == first.read_text()
    # detection is switched back on after a restore
    from tracking.conf import tracking_settings

    assert tracking_settings.BUILTIN_RULES is True and tracking_settings.DETECTORS is None
    # and a re-import of the same export adds nothing
    assert f"0 imported, {len(before)} already present" in run("import", str(first))[1]


def test_every_field_flagged_tags_and_findings_exported(tmp_path, seeded):
    rows = _records(_export(tmp_path, "ndjson"), "ndjson")
    assert all(list(r) == list(EXPORT_FIELDS) for r in rows)
    flagged = [r for r in rows if r["flagged"]]
    assert len(flagged) >= 1
    hit = next(r for r in flagged if "takeover" in r["tags"])
    assert hit["risk_score"] >= 0.93 and hit["severity"] == "high"
    assert hit["review_status"] == "confirmed"
    assert any(f["reason"] == "London to Moscow in 5 min" for f in hit["findings"])
    assert hit["user"] is not None and hit["city"] == "Moscow"
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps) and stamps[0].endswith("+00:00")
    # nothing secret leaves: login passwords were redacted on the way in
    logins = [r for r in rows if r["endpoint"] == "/accounts/login/" and r["params"]]
    assert logins and all("hunter2" not in json.dumps(r["params"]) for r in logins)


def test_filters_flagged_since_until_type(tmp_path, seeded):
    flagged = _records(_export(tmp_path, "ndjson", "--flagged"), "ndjson")
    assert flagged and all(r["flagged"] for r in flagged)
    assert len(flagged) == Activity.objects.filter(flagged=True).count()
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=6)
    window = _records(
        _export(tmp_path, "ndjson", "--since", since.isoformat(), "--until", until.isoformat()),
        "ndjson",
    )
    assert window
    assert all(since <= datetime.fromisoformat(r["timestamp"]) < until for r in window)
    assert len(window) == Activity.objects.filter(timestamp__gte=since, timestamp__lt=until).count()
    day = _records(
        _export(tmp_path, "ndjson", "--since", "2026-02-02", "--until", "2026-02-04"), "ndjson"
    )
    assert len(day) == Activity.objects.count()
    auth = _records(_export(tmp_path, "csv", "--type", "AUTH"), "csv")
    assert auth and {r["type"] for r in auth} == {"AUTH"}
    tagged = _records(_export(tmp_path, "ndjson", "--tag", "new_country"), "ndjson")
    assert tagged and all("new_country" in r["tags"] for r in tagged)
    name = seeded[0]["username"]
    mine = _records(_export(tmp_path, "ndjson", "--username", name), "ndjson")
    assert mine and {r["username"] for r in mine} == {name}
    assert len(mine) == Activity.objects.filter(username=name).count()


def test_stdout_and_format_from_extension(tmp_path, seeded):
    code, out, err = run("export")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == Activity.objects.count()
    assert json.loads(lines[0])["id"]
    assert f"exported {len(lines)} activities" in err
    path = tmp_path / "x.csv"
    run("export", "-o", str(path))
    assert path.read_text().splitlines()[0].split(",")[:3] == ["id", "timestamp", "type"]
    gz = tmp_path / "x.json.gz"
    run("export", "-o", str(gz))
    assert len(json.loads(gzip.open(gz, "rt").read())) == Activity.objects.count()


def test_csv_cells_are_neutralised_and_reimported(tmp_path, seeded):
    path = _export(tmp_path, "csv")
    text = path.read_text()
    assert "'=HYPERLINK" in text  # formula injection defused in a text cell
    _wipe()
    run("import", str(path))
    act = Activity.objects.get(user_agent__startswith="=HYPERLINK")
    assert act.user_agent == '=HYPERLINK("x")é\u2028x'
    assert act.params["note"] == '=HYPERLINK("x")'


def test_bad_arguments(tmp_path):
    code, _, err = run("export", "--since", "2026-02-03", "--until", "2026-02-02")
    assert code == 2 and "--since" in err
    with pytest.raises(Exception):
        call_command(
            "tracking",
            "export",
            "--since",
            "last tuesday",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    code, _, err = run("export", "-o", str(tmp_path / "no" / "such" / "dir.ndjson"))
    assert code == 2 and "cannot write" in err


def test_empty_database_exports_valid_documents(tmp_path):
    assert _records(_export(tmp_path, "json"), "json") == []
    assert _export(tmp_path, "csv").read_text().strip() == ",".join(EXPORT_FIELDS)
