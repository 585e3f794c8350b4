"""`tracking export`: every field, filters, formats, files; export → import → export is equal."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.management import call_command

from tracking.export.record import EXPORT_FIELDS
from tracking.models import Activity, Finding
from tracking.simulator import traffic

UTC = dt_timezone.utc

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


# --- parallel export (--workers): PostgreSQL splits the export over worker processes -----


def _odd_records():
    """NULLs, negative floats, formula triggers, quotes, commas, line breaks, unicode."""
    return [
        {
            "timestamp": (T0 + timedelta(hours=5, microseconds=7)).isoformat(),
            "type": "AUTH",
            "ip_address": "2001:db8::5",
            "endpoint": "-1+2",
            "method": "POST",
            "status": None,
            "duration": -0.0,
            "latitude": -33.9,
            "longitude": -70.6,
            "username": '@bob, "the" ünïcode',
            "user_agent": 'curl/8 (x, y) "q"\r\nnext',
            "tags": ["=sum", "new_country"],
            "headers": {"X-Note": "=1+1", "Q": '"'},
            "params": {"n": -5, "text": "a\r\nb", "ü": "\u2028"},
            "findings": [
                {"detector": "d", "tag": "=t", "score": 0.5, "severity": "low", "reason": "-r"}
            ],
        },
        {
            "timestamp": (T0 + timedelta(hours=5)).isoformat(),
            "type": "AUTH",
            "endpoint": "/",
            "method": "GET",
            "ip_address": None,
            "status": None,
            "duration": None,
            "latitude": None,
            "longitude": None,
            "headers": {},
            "params": {},
        },
    ]


@pytest.fixture
def odd(tmp_path, seeded):
    """``seeded`` plus odd records and a row whose payloads cannot be decrypted."""
    from tracking.fields import Ciphertext
    from tracking.integrity import crypto

    _load(tmp_path, _odd_records(), name="odd.ndjson")
    first, second = Activity.objects.order_by("timestamp", "id")[:2]
    Activity.objects.filter(pk=second.pk).update(
        headers=Ciphertext(crypto.encrypt({"a": 1}, f"tracking_activity.headers.{first.pk}")),
        params=Ciphertext("v1:deadbeef:AAAA"),
    )


FORMATS3 = ("csv", "ndjson", "json")
FILTERS = [
    [],
    ["--flagged"],
    ["--since", (T0 + timedelta(hours=2)).isoformat(), "--until", "2026-02-03"],
    ["--type", "AUTH", "--tag", "new_country"],
]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
@pytest.mark.parametrize("args", FILTERS, ids=["all", "flagged", "window", "type-tag"])
def test_parallel_export_is_identical_to_serial(tmp_path, odd, monkeypatch, fmt, args):
    from django.db import connection

    from tracking.cli.export import queryset
    from tracking.export import parallel as export_parallel
    from tracking.export.records import stream_export

    assert export_parallel.applies(queryset(), 3) is (connection.vendor == "postgresql")
    serial = _export(tmp_path, fmt, "--workers", "1", *args).read_bytes()
    assert serial  # and the API's reader (Django's values_list) writes the same text
    api_qs = Activity.objects.order_by("timestamp", "id").filter(
        pk__in=[r["id"] for r in _records(_export(tmp_path, "ndjson", *args), "ndjson")]
    )
    assert "".join(stream_export(api_qs, fmt)).encode() == serial
    # many small ranges (7 rows), more workers than cores
    monkeypatch.setattr(export_parallel, "STEP", 7)
    assert _export(tmp_path, fmt, "--workers", "3", *args).read_bytes() == serial
    code, out, err = run("export", "--format", fmt, "--workers", "2", *args)
    assert code == 0, err
    assert out.encode() == serial
    assert f"exported {api_qs.count()} activities" in err


@pytest.mark.parametrize("step", [1, 2, 1000])
def test_parallel_ranges_of_any_size(tmp_path, odd, monkeypatch, step):
    """One row per range, a last range that is empty (the count is a multiple of the step)
    or a single range: the JSON commas and the CSV header come out right."""
    from tracking.export import parallel as export_parallel

    serial = {fmt: _export(tmp_path, fmt, "--workers", "1").read_bytes() for fmt in FORMATS3}
    monkeypatch.setattr(export_parallel, "STEP", step)
    for fmt in FORMATS3:
        assert _export(tmp_path, fmt, "--workers", "2").read_bytes() == serial[fmt]
    assert json.loads(serial["json"])


def test_parallel_empty_selection(tmp_path, seeded):
    for fmt, text in (
        ("csv", ",".join(EXPORT_FIELDS) + "\r\n"),
        ("json", "[\n]\n"),
        ("ndjson", ""),
    ):
        path = _export(tmp_path, fmt, "--workers", "2", "--since", "2030-01-01")
        assert path.read_bytes() == text.encode()


def test_parallel_worker_failure_stops_the_export(tmp_path, seeded, monkeypatch):
    from django.db import connection

    from tracking.export import parallel as export_parallel

    def broken(*args, **kwargs):
        raise ValueError("disk on fire")

    monkeypatch.setattr(export_parallel, "_encode_range", broken)
    path = tmp_path / "out.csv"
    if connection.vendor == "postgresql":
        with pytest.raises(Exception, match="disk on fire"):  # from a worker or the parent
            run("export", "--workers", "2", "-o", str(path))
        assert list(tmp_path.iterdir()) == [tmp_path / "in.ndjson"]  # no partial file
    else:  # serial there: the workers never run
        assert run("export", "--workers", "2", "-o", str(path))[0] == 0


def test_workers_must_be_positive():
    for bad in ("0", "-1", "x"):
        with pytest.raises(Exception, match="workers"):
            call_command("tracking", "export", "--workers", bad, stdout=io.StringIO())


@pytest.mark.parametrize("step", [1, 3, 10_000])
def test_ranges_partition_the_ordered_rows(seeded, step):
    from tracking.cli.export import queryset
    from tracking.export.parallel import boundaries, within

    qs = queryset(types=["AUTH", "API"])
    ordered = list(qs.values_list("id", flat=True))
    bounds = boundaries(qs, step)
    assert len(bounds) == len(ordered) // step
    ranges = zip([None, *bounds], [*bounds, None], strict=True)
    pieces = [list(within(qs, low, high).values_list("id", flat=True)) for low, high in ranges]
    assert [pk for piece in pieces for pk in piece] == ordered
    assert all(len(piece) == step for piece in pieces[:-1])
    assert boundaries(Activity.objects.none().order_by("timestamp", "id"), step) == []


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_command_is_killed(seeded):
    """A worker must not outlive a killed command (waiting on its pipe for ever)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        url = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        url = f"sqlite:///{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("TEST_DB_SUFFIX", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "tracking", "export", "--workers", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    # The export is under way (on PostgreSQL with its workers); more than a pipe buffer of
    # output, so it then waits on this unread pipe until killed.
    assert proc.stdout.read(1) == b"{"
    workers = _children(proc.pid)
    assert len(workers) == (2 if connection.vendor == "postgresql" else 0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 15
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in workers)


def test_snapshot_id_is_checked_before_it_is_written_into_sql():
    # SET TRANSACTION SNAPSHOT takes no bound parameter under server-side binding.
    from tracking.export.parallel import _set_snapshot

    assert _set_snapshot("00000003-0000001B-1") == "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'"
    for bad in ("x'; DROP TABLE tracking_activity; --", "", "00000003", None):
        with pytest.raises(ValueError, match="not a snapshot id"):
            _set_snapshot(bad)
