"""Alert channels (TRACKING_ALERTS) against local receivers: signature, grouping, filters,
rate limit, retries, dead letters, Slack/email/custom backends, blocks, no secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.delivery_helpers import (
    HOSTILE_SECRET,
    HttpReceiver,
    failed_logins,
    flagged_event,
    plain_event,
)
from tracking import signals
from tracking.delivery import runner
from tracking.health import collect
from tracking.models import Activity, PendingAlert
from tracking.pipeline.ingest import ingest

UTC = dt_timezone.utc

SECRET = "webhook-secret-0123456789abcdef"
SENT: list[dict] = []


class Collect:
    """A custom backend by dotted path: keeps what it is given."""

    def __init__(self, options):
        self.options = options

    def send(self, message):
        SENT.append(message)


@pytest.fixture(autouse=True)
def _manual(settings):
    settings.TRACKING_DELIVERY = "manual"
    settings.TRACKING_SITE_URL = "https://audit.example.com"
    SENT.clear()


@pytest.fixture
def receiver():
    r = HttpReceiver()
    yield r
    r.close()


def webhook(receiver, **extra):
    return {"backend": "webhook", "url": receiver.url + "/hook", "secret": SECRET, **extra}


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.django_db
def test_webhook_is_signed_and_a_campaign_is_one_message(settings, receiver, django_user_model):
    # A brute force on an existing account (a name matching no account is stored masked).
    django_user_model.objects.create_user("victim")
    settings.TRACKING_ALERTS = [webhook(receiver, min_severity="medium")]
    ingest(failed_logins(40))
    flagged = {str(i) for i in Activity.objects.filter(flagged=True).values_list("id", flat=True)}
    assert len(flagged) >= 20  # the brute-force rule flags the campaign

    runner.deliver()
    assert receiver.requests == []  # the group stays open for group_seconds (300)

    runner.deliver(later(301))
    assert 1 <= len(receiver.requests) <= 2  # one per rule and source, not 40
    listed: list[str] = []
    for headers, body, path in receiver.requests:
        assert path == "/hook"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Tracking-Signature"] == expected
        assert abs(int(headers["X-Tracking-Timestamp"]) - time.time()) < 60
        doc = json.loads(body)
        sent_at = datetime.fromtimestamp(int(headers["X-Tracking-Timestamp"]), UTC)
        assert doc["sent_at"] == sent_at.isoformat()
        assert doc["kind"] == "findings" and doc["source"] == "203.0.113.77"
        assert doc["severity"] == "high"
        for item in doc["activities"]:
            listed.append(item["id"])
            assert item["user"] == "victim" and item["ip"] == "203.0.113.77"
            assert item["risk"] > 0 and item["tags"] and item["reasons"]
            assert item["link"] == (
                f"https://audit.example.com/api/tracking/dashboard/activity/{item['id']}/"
            )
        assert HOSTILE_SECRET not in body.decode()
        assert "headers" not in body.decode() and "params" not in body.decode()
    assert sorted(listed) == sorted(flagged)  # every flagged activity, once
    assert not PendingAlert.objects.exists()


@pytest.mark.django_db
def test_tampered_body_fails_the_signature(settings, receiver):
    settings.TRACKING_ALERTS = [webhook(receiver, group_seconds=0)]
    ingest([flagged_event()])
    runner.deliver()
    headers, body, _ = receiver.requests[0]
    forged = body.replace(b'"high"', b'"low"')
    digest = hmac.new(SECRET.encode(), forged, hashlib.sha256).hexdigest()
    assert headers["X-Tracking-Signature"] != "sha256=" + digest


@pytest.mark.django_db
def test_filters_severity_type_and_tag(settings):
    path = "tests.test_alerts.Collect"
    settings.TRACKING_ALERTS = [
        {"backend": path, "name": "high", "min_severity": "high", "group_seconds": 0},
        {"backend": path, "name": "critical", "min_severity": "critical", "group_seconds": 0},
        {"backend": path, "name": "auth-only", "types": ["AUTH"], "group_seconds": 0},
        {"backend": path, "name": "fraud", "tags": ["fraud"], "group_seconds": 0},
    ]
    ingest([flagged_event(), plain_event()])
    runner.deliver()
    assert sorted(m["channel"] for m in SENT) == ["fraud", "high"]
    assert all(m["activities"][0]["type"] == "PAYMENT" for m in SENT)


@pytest.mark.django_db
def test_retry_after_the_receiver_comes_back(settings, receiver):
    settings.TRACKING_ALERTS = [webhook(receiver, group_seconds=0, retry_seconds=30)]
    ingest([flagged_event()])
    receiver.status = 503
    runner.deliver()
    alert = PendingAlert.objects.get()
    assert alert.attempts == 1 and "503" in alert.last_error
    runner.deliver()  # before the backoff: not tried again
    assert PendingAlert.objects.get().attempts == 1
    receiver.status = 200
    runner.deliver(later(31))
    assert len(receiver.requests) == 1
    assert not PendingAlert.objects.exists()
    row = collect()["delivery"]["consumers"][0]
    assert row["failures"] == 1 and row["last_delivery"] and row["dead_letters"] == 0


@pytest.mark.django_db
def test_dead_letters_are_counted_in_health_doctor_and_dashboard(
    settings, receiver, client, staff_user
):
    settings.TRACKING_ALERTS = [
        webhook(receiver, name="soc", group_seconds=0, retry_seconds=0, max_attempts=2)
    ]
    receiver.status = 500
    ingest([flagged_event()])
    runner.deliver()
    runner.deliver()
    assert PendingAlert.objects.get().status == PendingAlert.Status.DEAD
    runner.deliver()  # a dead letter is not tried again
    assert PendingAlert.objects.get().attempts == 2
    data = collect()
    assert data["dead_letters"] == 1
    assert any("soc: 1 dead letters" in w for w in data["warnings"])
    out = StringIO()
    call_command("tracking", "doctor", stdout=out)  # dead letters warn; nothing recorded is lost
    text = out.getvalue()
    assert "Alert soc (WebhookBackend)" in text and "1 dead letters" in text

    client.force_login(staff_user)
    page = client.get("/api/tracking/dashboard/").content.decode()
    assert 'id="delivery-table"' in page and 'data-name="soc"' in page
    assert "HTTP 500" in page  # the last error of a failing channel

    receiver.status = 200  # the receiver is fixed: the operator retries the dead letter
    out = StringIO()
    call_command("tracking", "forward", "--retry-dead", stdout=out)
    assert (
        "dead letters given new attempts: 1" in out.getvalue()
        and "alerts sent: 1" in out.getvalue()
    )
    assert len(receiver.requests) == 1 and not PendingAlert.objects.exists()


@pytest.mark.django_db
def test_rate_limit_delays_and_never_drops(settings):
    settings.TRACKING_ALERTS = [
        {"backend": "tests.test_alerts.Collect", "group_seconds": 0, "rate_limit": "1/min"}
    ]
    ingest([flagged_event(ip_address="198.51.100.1"), flagged_event(ip_address="198.51.100.2")])
    runner.deliver()
    assert len(SENT) == 1
    runner.deliver(later(10))
    assert len(SENT) == 1
    runner.deliver(later(61))
    assert len(SENT) == 2
    assert {m["source"] for m in SENT} == {"198.51.100.1", "198.51.100.2"}


@pytest.mark.django_db
def test_slack_message_escapes_recorded_values(settings, receiver):
    settings.TRACKING_ALERTS = [{"backend": "slack", "url": receiver.url, "group_seconds": 0}]
    ingest([flagged_event(username="<!channel> & <https://evil.example|click>")])
    runner.deliver()
    text = json.loads(receiver.requests[0][1])["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert "|details>" in text and HOSTILE_SECRET not in text


@pytest.mark.django_db
def test_email_goes_through_django_mail(settings, mailoutbox):
    settings.TRACKING_ALERTS = [
        {
            "backend": "email",
            "recipients": ["soc@example.com"],
            "group_seconds": 0,
            "from_email": "audit@example.com",
        }
    ]
    ingest([flagged_event()])
    runner.deliver()
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["soc@example.com"] and mail.from_email == "audit@example.com"
    assert "[HIGH] 1 flagged activity" in mail.subject
    act = Activity.objects.get()
    assert str(act.id) in mail.body and "198.51.100.9" in mail.body and "alice" in mail.body
    assert HOSTILE_SECRET not in mail.body + mail.subject


@pytest.mark.django_db
def test_blocks_are_alerted(settings):
    settings.TRACKING_ALERTS = [{"backend": "tests.test_alerts.Collect", "min_severity": "medium"}]

    class Block:
        def __init__(self):
            self.id = 7
            self.scope = "ip"
            self.value = "203.0.113.77"
            self.reason = "brute force"
            self.api_token = HOSTILE_SECRET

        def __str__(self):
            return "ip 203.0.113.77 (brute force)"

    block = Block()
    signals.block_created.send(sender=None, block=block)
    signals.block_lifted.send(sender=None, block=block, by="admin", reason="false positive")
    runner.deliver()  # blocks are not grouped: sent at once
    assert [m["kind"] for m in SENT] == ["block_created", "block_lifted"]
    created, lifted = SENT
    assert created["block"]["value"] == "203.0.113.77" and created["severity"] == "high"
    assert "Block created: ip 203.0.113.77" in created["title"]
    assert (
        lifted["block"]["lifted_by"] == "admin"
        and lifted["block"]["lift_reason"] == "false positive"
    )
    assert HOSTILE_SECRET not in json.dumps(SENT)


@pytest.mark.django_db
def test_a_broken_channel_does_not_stop_the_others(settings, receiver):
    settings.TRACKING_ALERTS = [
        {
            "backend": "webhook",
            "name": "down",
            "url": "http://127.0.0.1:9/",
            "secret": SECRET,
            "group_seconds": 0,
            "retry_seconds": 0,
        },
        webhook(receiver, name="up", group_seconds=0),
    ]
    ingest([flagged_event()])
    report = runner.deliver()
    assert report.alerts_sent == 1 and len(receiver.requests) == 1
    assert len(report.failures) == 1 and report.failures[0].startswith("down: DeliveryError")
    assert PendingAlert.objects.get().channel == "down"
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("tracking", "forward", stdout=out, stderr=err)
    assert exited.value.code == 1 and "failed: down: DeliveryError" in err.getvalue()
    assert "alerts sent: 0" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_background_thread_sends_when_the_group_closes(settings, receiver):
    settings.TRACKING_DELIVERY = "thread"
    settings.TRACKING_DELIVERY_INTERVAL = 60  # only the group's closing time can wake it
    settings.TRACKING_ALERTS = [webhook(receiver, group_seconds=1)]
    try:
        started = time.monotonic()
        ingest([flagged_event()])
        ingest([flagged_event()])  # same rule and source, inside the window: same message
        deadline = started + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.requests, "the group was not sent when its window closed"
        assert time.monotonic() - started >= 1.0
        assert [len(json.loads(b)["activities"]) for b in receiver.bodies()] == [2]
    finally:
        runner.shutdown()


@pytest.mark.django_db
def test_short_webhook_secret_is_a_warning(settings, receiver):
    from django.core import checks

    settings.TRACKING_ALERTS = [{"backend": "webhook", "url": receiver.url, "secret": "tiny"}]
    found = [m for m in checks.run_checks() if m.id.startswith("tracking.") and "17" in m.id]
    assert [m.id for m in found] == ["tracking.W171"]
    ingest([flagged_event()])
    runner.deliver()
    runner.deliver(later(301))
    assert len(receiver.requests) == 1  # a warning: the channel works
