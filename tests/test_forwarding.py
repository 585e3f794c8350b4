"""Forwarders (TRACKING_FORWARDERS) against local receivers: every activity exactly by id,
CEF/ECS/JSON content and escaping, outage and restart, seal heads, blocks, replay."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from tests.delivery_helpers import (
    HOSTILE_SECRET,
    HttpReceiver,
    TcpListener,
    UdpListener,
    flagged_event,
    ndjson,
    plain_event,
)
from tracking import signals
from tracking.delivery import config, runner
from tracking.export.record import EXPORT_FIELDS
from tracking.integrity.sealing import seal_pending
from tracking.models import Activity, DeliveryState, Seal
from tracking.pipeline.ingest import ingest

RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (.*)$", re.S)


@pytest.fixture(autouse=True)
def _manual(settings):
    settings.TRACKING_DELIVERY = "manual"


@pytest.fixture
def udp():
    listener = UdpListener()
    yield listener
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cef_ext(line: str) -> dict[str, str]:
    """Parse a CEF extension (unescaping), to check what a SIEM would read."""
    ext = re.split(r"(?<!\\)\|", line, maxsplit=7)[7]
    out, key, value, i = {}, None, "", 0
    tokens = re.split(r"(?<!\\) (?=\w+=)", ext)
    for token in tokens:
        key, _, value = token.partition("=")
        value = re.sub(
            r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value
        )
        out[key] = value
    del i
    return out


@pytest.mark.django_db
def test_syslog_udp_cef_every_activity_exactly_once(settings, udp):
    settings.TRACKING_FORWARDERS = [
        {
            "backend": "syslog",
            "address": f"127.0.0.1:{udp.port}",
            "protocol": "udp",
            "format": "cef",
        }
    ]
    results = [ingest([plain_event() for _ in range(7)]), ingest([flagged_event(), plain_event()])]
    ids = sorted(i for r in results for i in r.ids)
    report = runner.deliver()
    assert report.forwarded == 9 and not report.failures
    lines = udp.wait_for(9)
    runner.deliver()  # nothing new: nothing sent again
    assert len(udp.wait_for(10, timeout=0.3)) == 9
    got = []
    for line in lines:
        match = RFC5424.match(line)
        assert match, line
        pri, _, _, app, _, msgid, msg = match.groups()
        assert app == "django-tracking" and msgid == "ACTIVITY"
        assert int(pri) // 8 == 10  # authpriv
        assert msg.startswith("CEF:0|Django Activity Tracking|tracking|")
        ext = cef_ext(msg)
        got.append(ext["externalId"])
        assert ext["cs1Label"] == "tags" and ext["cs2Label"] == "risk"
        assert HOSTILE_SECRET not in line
    assert sorted(got) == ids
    flagged_line = next(line for line in lines if "PAYMENT" in line)
    ext = cef_ext(flagged_line)
    assert ext["src"] == "198.51.100.9" and ext["suser"] == "alice"
    assert ext["requestMethod"] == "POST" and ext["request"] == "/pay/"
    assert ext["cs1"] == "fraud" and ext["cs2"] == "0.9300" and ext["cs6"] == "true"
    assert flagged_line.split("|")[6] == "8"  # high


@pytest.mark.django_db
def test_cef_escapes_hostile_values(settings, udp):
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "address": f"127.0.0.1:{udp.port}", "format": "cef"}
    ]
    hostile = "evil\\ name|x=1 suser=admin\nCEF:0|forged\r\x1b"
    ingest([plain_event(username=hostile, endpoint="/a|b=c\\d")])
    runner.deliver()
    (line,) = udp.wait_for(1)
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    ext = cef_ext(RFC5424.match(line).group(7))
    assert ext["suser"] == "evil\\ name|x=1 suser=admin\nCEF:0|forged\r"
    assert ext["request"] == "/a|b=c\\d"
    assert list(ext).count("suser") == 1


@pytest.mark.django_db
def test_syslog_tcp_outage_delays_and_never_drops(settings):
    port = free_port()
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "name": "siem", "address": f"127.0.0.1:{port}", "protocol": "tcp", "format": "ecs", "retry_seconds": 10}
    ]  # fmt: skip
    first = ingest([plain_event() for _ in range(3)]).ids
    report = runner.deliver()  # nobody listens yet
    assert report.forwarded == 0 and report.failures[0].startswith("siem: ConnectionRefusedError")
    state = DeliveryState.objects.get(name="forward:siem")
    assert state.failures == 1 and state.position == 0 and "refused" in state.last_error.lower()
    second = ingest([flagged_event()]).ids
    listener = TcpListener(port)
    try:
        runner.deliver()  # still backing off
        assert listener.wait_for(1, timeout=0.3) == []
        runner.deliver(timezone.now() + timedelta(seconds=11))
        lines = listener.wait_for(4)
        docs = [json.loads(RFC5424.match(line).group(7)) for line in lines]
        assert sorted(d["event"]["id"] for d in docs) == sorted(first + second)
        # The receiver restarts: the next line goes through a new connection.
        listener.close()
        listener = TcpListener(port)
        third = ingest([plain_event()]).ids
        runner.deliver(timezone.now() + timedelta(seconds=12))
        lines = listener.wait_for(1)
        assert [json.loads(RFC5424.match(x).group(7))["event"]["id"] for x in lines] == third
    finally:
        listener.close()
    assert DeliveryState.objects.get(name="forward:siem").attempts == 0


@pytest.mark.django_db
def test_ecs_document(settings):
    receiver = HttpReceiver()
    settings.TRACKING_FORWARDERS = [
        {"backend": "http", "url": receiver.url + "/ingest", "format": "ecs", "headers": {"Authorization": "ApiKey abc"}}
    ]  # fmt: skip
    try:
        ingest(
            [
                flagged_event(
                    user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
                    duration=12.5,
                )
            ]
        )
        runner.deliver()
        (headers, body, path) = receiver.requests[0]
    finally:
        receiver.close()
    assert path == "/ingest" and headers["Authorization"] == "ApiKey abc"
    assert headers["Content-Type"] == "application/x-ndjson"
    (doc,) = ndjson(body)
    act = Activity.objects.get()
    assert doc["event"]["id"] == str(act.id) and doc["event"]["kind"] == "alert"
    assert doc["event"]["action"] == "PAYMENT" and doc["event"]["risk_score"] == 0.93
    assert doc["event"]["outcome"] in ("success", "failure", "unknown")
    assert doc["event"]["duration"] == 12_500_000
    assert doc["source"]["ip"] == "198.51.100.9"
    assert doc["user"]["name"] == "alice" and doc["url"]["path"] == "/pay/"
    assert (
        doc["http"]["request"]["method"] == "POST" and doc["http"]["response"]["status_code"] == 200
    )
    assert doc["user_agent"]["original"].startswith("Mozilla/5.0") and doc["user_agent"]["name"]
    assert doc["tags"] == ["fraud"] and doc["ecs"]["version"]
    if act.country:
        assert doc["source"]["geo"]["country_iso_code"] == act.country
    if act.asn:
        assert doc["source"]["as"]["number"] == act.asn
    assert HOSTILE_SECRET not in body.decode()


@pytest.mark.django_db
def test_json_is_the_export_record_without_request_content(settings, caplog):
    settings.TRACKING_FORWARDERS = [
        {"backend": "logging", "logger": "tests.forward", "format": "json"}
    ]
    ingest([plain_event(), flagged_event()])
    with caplog.at_level(logging.INFO, logger="tests.forward"):
        runner.deliver()
    records = [r for r in caplog.records if r.name == "tests.forward"]
    assert len(records) == 2
    for rec in records:
        doc = json.loads(rec.getMessage())
        assert rec.tracking_id == doc["id"] and rec.tracking_kind == "activity"
        assert set(doc) == set(EXPORT_FIELDS) - {"headers", "params", "session_id"}
        assert HOSTILE_SECRET not in rec.getMessage()
    flagged = next(json.loads(r.getMessage()) for r in records if "PAYMENT" in r.getMessage())
    assert flagged["flagged"] is True and flagged["tags"] == ["fraud"]


@pytest.mark.django_db
def test_elasticsearch_bulk_uses_the_id_and_checks_items(settings):
    answer = {"errors": True, "items": [{"create": {"status": 201}}, {"create": {"status": 409}}]}
    receiver = HttpReceiver(answer=json.dumps(answer).encode())
    settings.TRACKING_FORWARDERS = [
        {"backend": "http", "url": receiver.url + "/_bulk", "mode": "elasticsearch", "index": "logs-tracking", "format": "ecs"}
    ]  # fmt: skip
    try:
        ids = ingest([plain_event(), plain_event()]).ids
        assert runner.deliver().forwarded == 2
        lines = ndjson(receiver.requests[0][1])
        assert [line["create"]["_id"] for line in lines[::2]] == [
            d["event"]["id"] for d in lines[1::2]
        ]
        assert sorted(line["create"]["_id"] for line in lines[::2]) == sorted(ids)
        assert all(line["create"]["_index"] == "logs-tracking" for line in lines[::2])
        receiver.answer = json.dumps(
            {"errors": True, "items": [{"create": {"status": 400}}]}
        ).encode()
        ingest([plain_event()])
        runner.deliver()
        state = DeliveryState.objects.get(name="forward:http")
        assert state.failures == 1 and "refused a document" in state.last_error
    finally:
        receiver.close()


@pytest.mark.django_db
def test_seal_heads_and_blocks_are_forwarded(settings, udp):
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "address": f"127.0.0.1:{udp.port}", "format": "json"}
    ]
    ingest([plain_event(), plain_event()])
    seal_pending()
    seal = Seal.objects.get()

    class Block:
        id = 3
        value = "203.0.113.77"
        session_key = HOSTILE_SECRET

        def __str__(self):
            return "ip 203.0.113.77"

    signals.block_created.send(sender=None, block=Block())
    runner.deliver()
    docs = [json.loads(RFC5424.match(line).group(7)) for line in udp.wait_for(4)]
    seals = [d for d in docs if d.get("record_type") == "seal"]
    assert seals == [
        {
            "record_type": "seal", "id": f"seal-{seal.last_seq}", "first_seq": seal.first_seq, "last_seq": seal.last_seq,
            "count": 2, "created_at": seal.created_at.isoformat(), "digest": seal.digest,
            "prev_hash": seal.prev_hash, "chain_hash": seal.chain_hash, "key_id": seal.key_id,
            "mac": seal.mac,
        }
    ]  # fmt: skip
    (block,) = [d for d in docs if d.get("record_type") == "block_created"]
    assert block["block"]["value"] == "203.0.113.77" and "session_key" not in block["block"]
    assert len([d for d in docs if "type" in d]) == 2
    runner.deliver()
    assert len(udp.wait_for(5, timeout=0.3)) == 4  # the seal is not sent twice


@pytest.mark.django_db
def test_replay_a_range(settings, udp):
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "name": "siem", "address": f"127.0.0.1:{udp.port}", "format": "cef"}
    ]
    now = timezone.now()
    old = ingest(
        [
            plain_event(timestamp=now - timedelta(days=3)),
            plain_event(timestamp=now - timedelta(days=2)),
        ]
    ).ids
    ingest([plain_event(timestamp=now - timedelta(hours=1))])
    out = StringIO()
    since = (now - timedelta(days=4)).date().isoformat()
    until = (now - timedelta(days=1, hours=12)).isoformat()
    call_command(
        "tracking", "forward", "--since", since, "--until", until, "--no-seals", stdout=out
    )
    assert "siem: 2 lines replayed" in out.getvalue()
    got = [cef_ext(RFC5424.match(x).group(7))["externalId"] for x in udp.wait_for(2)]
    assert got == old  # timestamp order
    assert DeliveryState.objects.filter(name="forward:siem", position__gt=0).count() == 0
    with pytest.raises(Exception, match="no forwarder named nope"):
        call_command("tracking", "forward", "--since", since, "--forwarder", "nope")


def activity_ids(receiver) -> list[str]:
    docs = [d for b in receiver.bodies() for d in ndjson(b)]
    return sorted(d["id"] for d in docs if "record_type" not in d)


@pytest.mark.django_db(transaction=True)
def test_a_new_process_resumes_from_the_cursor(settings, tmp_path):
    """This process forwards a first batch; a separate `manage.py tracking forward` process
    (a restart) sends exactly what was stored after it, from the cursor in the database."""
    receiver = HttpReceiver()
    forwarders = [{"backend": "http", "name": "collector", "url": receiver.url, "format": "json"}]
    settings.TRACKING_FORWARDERS = forwarders
    try:
        delivered = ingest([plain_event() for _ in range(4)]).ids
        runner.deliver()
        assert activity_ids(receiver) == sorted(delivered)
        pending = ingest([plain_event() for _ in range(3)]).ids
        receiver.requests.clear()
        db = connection.settings_dict
        if connection.vendor == "sqlite":
            url = f"sqlite:///{db['NAME']}"
        else:
            url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "tests.forward_settings",
            "TRACKING_TEST_FORWARDERS": json.dumps(forwarders),
        }
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(
            [sys.executable, "-m", "django", "tracking", "forward"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "lines forwarded:" in done.stdout
        assert activity_ids(receiver) == sorted(pending)
    finally:
        receiver.close()


@pytest.mark.django_db
def test_invalid_configuration_is_a_system_check_error(settings):
    from django.core import checks

    settings.TRACKING_ALERTS = [
        {"backend": "webhook", "url": "ftp://x", "secret": ""},
        {"backend": "email"},
        {"backend": "no.such.Backend"},
        {"backend": "slack", "url": "https://hooks.slack.com/x", "min_severity": "urgent"},
        {
            "backend": "slack",
            "name": "s2",
            "url": "https://hooks.slack.com/x",
            "rate_limit": "lots",
        },
    ]
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "address": "nowhere", "protocol": "sctp"},
        {"backend": "http", "url": "http://127.0.0.1:1/", "format": "cef"},
        {"backend": "syslog", "name": "x", "address": "127.0.0.1:514", "format": "xml"},
    ]
    settings.TRACKING_DELIVERY = "carrier-pigeon"
    found = [m for m in checks.run_checks() if m.id.startswith("tracking.E17")]
    text = "\n".join(m.msg for m in found)
    assert {m.id for m in found} == {"tracking.E170", "tracking.E171", "tracking.E172"}
    for expected in (
        'webhook needs "url"', 'webhook needs "secret"', 'email needs "recipients"',
        "'no.such.Backend' cannot be imported", "min_severity must be one of",
        'rate_limit must look like "30/min"',
        'address must be "host:port"', "protocol must be one of", 'use "ecs" or "json"',
        "format must be one of cef, ecs, json", 'TRACKING_DELIVERY must be "thread"',
    ):  # fmt: skip
        assert expected in text
    assert config.channels() == [] and config.forwarders() == []  # nothing half-configured runs


def test_cef_escaping_rules():
    from tracking.forwarding.formats import cef_header, cef_value

    assert cef_header("a|b\\c\nd\x00e") == "a\\|b\\\\c de"
    assert cef_value("k=v\\x\r\ny|z\x00\x07\u2028") == "k\\=v\\\\x\\r\\ny|z"


@pytest.mark.django_db
def test_syslog_over_tls_verifies_the_receiver(settings, tmp_path):
    import ssl

    from tests.delivery_helpers import self_signed

    cert, key = self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    listener = TcpListener(tls=server)
    entry = {
        "backend": "syslog",
        "name": "tls",
        "address": f"127.0.0.1:{listener.port}",
        "protocol": "tls",
        "format": "cef",
    }
    try:
        settings.TRACKING_FORWARDERS = [entry]  # the system's CAs do not know this certificate
        ids = ingest([plain_event(), plain_event()]).ids
        report = runner.deliver()
        assert report.forwarded == 0 and "CERTIFICATE_VERIFY_FAILED" in report.failures[0]
        settings.TRACKING_FORWARDERS = [{**entry, "ca_file": cert}]
        runner.deliver(timezone.now() + timedelta(seconds=10))
        lines = listener.wait_for(2)
        got = [cef_ext(RFC5424.match(x).group(7))["externalId"] for x in lines]
        assert sorted(got) == sorted(ids)
    finally:
        listener.close()


def test_http_modes_for_splunk_and_loki():
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from tracking.forwarding.http import HttpTransport
    from tracking.forwarding.message import Message

    when = datetime(2026, 12, 3, 12, 0, tzinfo=dt_timezone.utc)
    msgs = [
        Message("activity", "id-1", when, '{"a":1}'),
        Message("activity", "id-2", when, '{"a":2}'),
    ]
    body, content_type = HttpTransport(
        {"url": "http://x/", "mode": "splunk", "sourcetype": "tracking"}
    ).body(msgs)
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert content_type == "application/json"
    assert events[0] == {
        "time": when.timestamp(),
        "sourcetype": "tracking",
        "source": "django-activity-tracking",
        "event": {"a": 1},
    }
    body, _ = HttpTransport({"url": "http://x/", "mode": "loki", "labels": {"app": "shop"}}).body(
        msgs
    )
    doc = json.loads(body)
    assert doc == {
        "streams": [
            {
                "stream": {"app": "shop"},
                "values": [
                    [str(int(when.timestamp()) * 10**9), '{"a":1}'],
                    [str(int(when.timestamp()) * 10**9), '{"a":2}'],
                ],
            }
        ]
    }


@pytest.mark.django_db
def test_outcome_is_forwarded_when_the_activity_has_one():
    from tracking.alerts.messages import activity_item
    from tracking.forwarding.formats import CefFormat, EcsFormat

    ingest([plain_event(status=401)])
    act = Activity.objects.get()
    assert "outcome=" not in CefFormat().activity(act, []) or getattr(act, "outcome", "")
    act.outcome = "failure"  # the field of the outcome feature, or the attribute before it
    assert cef_ext(CefFormat().activity(act, []))["outcome"] == "failure"
    assert json.loads(EcsFormat().activity(act, []))["event"]["outcome"] == "failure"
    assert activity_item(act, [])["outcome"] == "failure"


class KeepLines:
    """A forwarder transport by dotted path."""

    lines: list = []

    def __init__(self, options):
        self.options = options

    def send(self, messages):
        KeepLines.lines.extend(messages)


@pytest.mark.django_db
def test_own_transport_by_dotted_path(settings):
    KeepLines.lines = []
    settings.TRACKING_FORWARDERS = [{"backend": "tests.test_forwarding.KeepLines", "format": "ecs"}]
    ids = ingest([plain_event(), flagged_event()]).ids
    runner.deliver()
    assert sorted(m.id for m in KeepLines.lines) == sorted(ids)
    assert all(json.loads(m.text)["event"]["id"] == m.id for m in KeepLines.lines)
