"""No loss under faults: database down, slow geo provider, killed process, broker down."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from tracking.enrich import geo
from tracking.events import Event
from tracking.integrity import macs as integrity
from tracking.models import Activity
from tracking.pipeline import housekeeping, spool, writer


@pytest.mark.django_db
def test_database_down_during_tracked_view(client, spool_dir, database_down):
    resp = client.post("/t/rec/login/", {"username": "u", "password": "pw"})
    assert resp.status_code == 200
    database_down.stop()
    assert Activity.objects.count() == 0
    assert spool.stats()["events"] == 1
    line = next(spool_dir.glob("seg-*.ndjson")).read_text()
    body = spool.decode_line(line.encode())["params"]["body"]
    assert "pw" not in body.values()  # spooled already redacted
    call_command("tracking", "flush", "--no-geo")
    a = Activity.objects.get()
    assert a.endpoint == "/t/rec/login/" and a.params["body"]["password"] == "[REDACTED]"
    assert spool.stats()["events"] == 0


@pytest.mark.django_db(transaction=True)
def test_database_down_async_log_spools_then_writer_replays(
    client, spool_dir, database_down, settings
):
    settings.TRACKING_SPOOL_REPLAY_INTERVAL = 0.05
    assert client.get("/t/rec/pay/").status_code == 200
    assert writer.flush(10)
    assert spool.stats()["events"] == 1 and writer.stats()["spooled"] == 1
    database_down.stop()
    deadline = time.monotonic() + 10
    while not Activity.objects.exists() and time.monotonic() < deadline:
        writer.flush(1)
        time.sleep(0.05)
    assert Activity.objects.get().endpoint == "/t/rec/pay/"


class _Blackhole:
    """A socket that accepts connections (backlog) and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/geo/{{ip}}"

    def __exit__(self, *exc):
        self.sock.close()


@pytest.fixture
def http_geo_only(settings, tmp_path):
    settings.GEOIP_PATH = str(tmp_path / "no-databases")
    settings.TRACKING_GEO_HTTP_TIMEOUT = 0.3
    yield settings
    geo.breaker.success()


@pytest.mark.django_db
def test_slow_geo_provider_does_not_slow_request(client, http_geo_only, spool_dir):
    client.get("/t/rec/login/", REMOTE_ADDR="10.0.0.1")  # warm up imports, parsers, detectors
    with _Blackhole() as url:
        http_geo_only.TRACKING_GEO_HTTP_URL = url
        started = time.monotonic()
        resp = client.get("/t/rec/login/", REMOTE_ADDR="81.2.69.20")
        elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert elapsed < 0.3 + 0.5  # the timeout, plus the request's own work
    a = Activity.objects.get(ip_address="81.2.69.20")
    assert a.geo_pending and a.country == "" and integrity.row_ok(a)


class _GeoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps(
            {
                "country_code": "GB",
                "city": "London",
                "lat": 51.5,
                "lon": -0.12,
                "asn": "AS64600",
                "isp": "Thames Broadband",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _geo_server():
    """A provider that answers every lookup with London; yields its URL template."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _GeoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{{ip}}"
    finally:
        server.shutdown()


@pytest.mark.django_db
def test_pending_geo_enriched_later(client, http_geo_only, spool_dir, settings):
    with _Blackhole() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        client.get("/t/rec/login/", REMOTE_ADDR="81.2.69.21")
    assert Activity.objects.get().geo_pending
    with _geo_server() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        assert geo.retry_pending_geo() == 1
    a = Activity.objects.get()
    assert not a.geo_pending and (a.country, a.city, a.asn) == ("GB", "London", 64600)
    assert integrity.row_ok(a)


@pytest.mark.django_db
def test_pending_geo_never_rewrites_a_row_sealed_meanwhile(
    client, http_geo_only, spool_dir, settings, monkeypatch
):
    """The sealer may seal a row between the retry reading it and writing its geo: the sealed
    content must stay as sealed (only the pending mark is cleared) and the chain verifies."""
    from tracking.integrity import sealing
    from tracking.integrity.verify import verify

    settings.TRACKING_SEAL_ON_WRITE = False
    with _Blackhole() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        client.get("/t/rec/login/", REMOTE_ADDR="81.2.69.21")
    assert Activity.objects.get().geo_pending
    real_lookup = geo.lookup

    def lookup_then_seal(ip):  # the race: sealing lands while the provider answers
        result = real_lookup(ip)
        sealing.seal_pending(include_geo_pending=True)  # as after the grace period
        return result

    monkeypatch.setattr(geo, "lookup", lookup_then_seal)
    with _geo_server() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        assert geo.retry_pending_geo() == 1
    a = Activity.objects.get()
    assert a.seq is not None and not a.geo_pending
    assert a.city == ""  # recorded without geo, sealed that way, kept that way
    assert integrity.row_ok(a)
    assert verify().ok


@pytest.mark.django_db
def test_geo_breaker_opens_after_failures(http_geo_only, settings):
    with _Blackhole() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        for i in range(geo.BREAKER_THRESHOLD):
            assert geo.lookup(f"81.2.69.{30 + i}").pending
        started = time.monotonic()
        assert geo.lookup("81.2.69.99").pending
        assert time.monotonic() - started < 0.05  # skipped, not waited for


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.conf import settings
    settings.TRACKING_SPOOL_DIR = sys.argv[1]
    settings.TRACKING_DURABLE_HANDOFF = True
    settings.TRACKING_SPOOL_REPLAY_INTERVAL = 0.01
    settings.TRACKING_SEAL_ON_WRITE = False
    from tracking.testing.faults import DatabaseFault, inserts_activities
    def slow(sql, params):  # a slow batch: the kill lands in the middle of it
        print("BATCH", flush=True)
        time.sleep(0.5)
    DatabaseFault(slow, match=inserts_activities).start()
    from tracking.events import Event
    from tracking.services import ActivityTracker
    tracker = ActivityTracker()
    for i in range(25):
        e = Event(type="API", endpoint=f"/kill/{i}")
        tracker.record(e, async_log=True)
        print("ACK", e.id, flush=True)
    time.sleep(60)
    """
)


def _db_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    cred = s.get("USER") or "postgres"
    if s.get("PASSWORD"):
        cred += f":{s['PASSWORD']}"
    return f"postgres://{cred}@{host}:{port}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_process_killed_mid_batch_loses_no_acknowledged_event(tmp_path, settings):
    spool_path = tmp_path / "kill-spool"
    settings.TRACKING_SPOOL_DIR = str(spool_path)
    env = dict(
        os.environ, DATABASE_URL=_db_url(), PYTHONPATH=str(Path(__file__).resolve().parents[1])
    )
    env.pop("TEST_DB_SUFFIX", None)
    errors = open(tmp_path / "child-stderr.txt", "w+")  # noqa: SIM115 - read back on failure
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(spool_path)],
        stdout=subprocess.PIPE,
        stderr=errors,
        env=env,
        text=True,
    )
    acked: list[str] = []
    batches = 0
    deadline = time.monotonic() + 120  # a loaded machine makes fsync slow
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("ACK "):
                acked.append(line.split()[1])
            elif line.startswith("BATCH"):
                batches += 1
            if len(acked) == 25 and batches >= 1:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    errors.seek(0)
    assert len(acked) == 25 and batches >= 1, errors.read()[-3000:]
    # "Restart": the next process (here: this one) replays what the dead one left behind,
    # including the segment it had claimed when it was killed.
    call_command("tracking", "flush", "--no-geo")
    stored = {str(i) for i in Activity.objects.values_list("id", flat=True)}
    assert set(acked) <= stored
    assert spool.stats()["events"] == 0


@pytest.mark.django_db(transaction=True)
def test_broker_down_falls_back_to_local_path(client, settings, spool_dir):
    from celery import Celery

    app = Celery("tracking-broker-down", broker="redis://127.0.0.1:1/0", set_as_current=True)
    settings.TRACKING_CELERY_APP = app
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"socket_connect_timeout": 0.5}
    settings.TRACKING_ASYNC_HANDOFF = "celery"
    before = writer.stats()["broker_fallbacks"]
    assert client.get("/t/rec/pay/").status_code == 200
    assert writer.flush(15)
    assert Activity.objects.get().endpoint == "/t/rec/pay/"
    assert writer.stats()["broker_fallbacks"] == before + 1
    assert writer.stats()["dropped"] == 0


@pytest.mark.django_db(transaction=True)
def test_writer_completes_owed_geo_when_provider_returns(
    client, http_geo_only, spool_dir, settings, monkeypatch
):
    monkeypatch.setattr(housekeeping, "GEO_RETRY_INTERVAL", 0.0)
    with _Blackhole() as url:
        settings.TRACKING_GEO_HTTP_URL = url
        client.get("/t/rec/login/", REMOTE_ADDR="81.2.69.22")
    assert Activity.objects.get().geo_pending and geo.owed()
    server = http.server.HTTPServer(("127.0.0.1", 0), _GeoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.TRACKING_GEO_HTTP_URL = f"http://127.0.0.1:{server.server_port}/{{ip}}"
        writer.submit(Event(type="API", endpoint="/tick"))
        deadline = time.monotonic() + 10
        while Activity.objects.filter(geo_pending=True).exists() and time.monotonic() < deadline:
            writer.flush(1)
            time.sleep(0.05)
    finally:
        server.shutdown()
    a = Activity.objects.get(endpoint="/t/rec/login/")
    assert not a.geo_pending and a.city == "London"
