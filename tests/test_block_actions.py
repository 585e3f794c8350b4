"""Rules and detectors requesting blocks: the YAML ``action.block``, ``Finding.block``, the
shipped pack, the step after detection, system checks, and ``tracking.assess``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core import checks
from django.test import RequestFactory, override_settings

import tracking
from detectors.base import Detector, Finding
from detectors.rules import RuleError, load_rule_file, load_rules
from tests.blocksite import site_settings, via_proxy
from tracking.detection.config import builtin_rule_dir
from tracking.events import Event
from tracking.models import Block, Profile
from tracking.pipeline.ingest import ingest
from tracking.respond import blocks

UTC = timezone.utc

RULE = "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yml"
    path.write_text(text)
    return path


# --- rule YAML ----------------------------------------------------------------------------


def test_rule_block_action_is_loaded(tmp_path):
    rule = load_rule_file(
        write(tmp_path, RULE + "action: {flag: true, block: {scope: address+account, seconds: 60}}")
    )
    assert rule.action.block == {"scope": "address+account", "seconds": 60}
    finding = rule.finding({})
    assert finding.block == {"scope": "address+account", "seconds": 60}


@pytest.mark.parametrize(
    ("block", "key", "message"),
    [
        ("true", "action.block", "must be a mapping"),
        ("{scope: planet, seconds: 60}", "action.block.scope", "unknown scope 'planet'"),
        ("{scope: address}", "action.block.seconds", "required key is missing"),
        ("{seconds: 60}", "action.block.scope", "required key is missing"),
        ("{scope: address, seconds: 0}", "action.block.seconds", "positive whole number"),
        ("{scope: address, seconds: 10m}", "action.block.seconds", "positive whole number"),
        ("{scope: address, seconds: 99999999}", "action.block.seconds", "30 days"),
        ("{scope: address, seconds: 60, forever: true}", "action.block.forever", "unknown key"),
    ],
)
def test_invalid_block_actions_name_file_and_key(tmp_path, block, key, message):
    path = write(tmp_path, RULE + f"action: {{block: {block}}}\n")
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    assert info.value.key == key
    assert message in str(info.value) and str(path) in str(info.value)


def test_shipped_pack_blocks_stuffing_spraying_and_brute_force():
    actions = {r.id: r.action.block for r in load_rules([builtin_rule_dir()])}
    assert actions["trk-credential-stuffing-block"]["scope"] == "address"
    assert actions["trk-password-spraying-block"]["scope"] == "address"
    assert actions["trk-brute-force"]["scope"] == "account"
    blocking = {"trk-credential-stuffing-block", "trk-password-spraying-block", "trk-brute-force"}
    assert all(v is None for k, v in actions.items() if k not in blocking)
    # Flagging starts earlier than blocking: a NAT's few typos are reviewed, never locked out.
    rules = {r.id: r for r in load_rules([builtin_rule_dir()])}
    for flag, block in (
        ("trk-credential-stuffing", "trk-credential-stuffing-block"),
        ("trk-password-spraying", "trk-password-spraying-block"),
    ):
        assert rules[flag].threshold.count < rules[block].threshold.count
        assert rules[flag].threshold.timespan == rules[block].threshold.timespan


# --- detectors ------------------------------------------------------------------------------


def test_finding_block_is_validated():
    ok = Finding("d", "t", 0.5, "high", "r", block={"scope": "account", "seconds": 30})
    assert ok.block == {"scope": "account", "seconds": 30}
    with pytest.raises(ValueError, match="scope"):
        Finding("d", "t", 0.5, "high", "r", block={"scope": "host", "seconds": 30})
    with pytest.raises(ValueError, match="seconds"):
        Finding("d", "t", 0.5, "high", "r", block={"scope": "account", "seconds": -1})
    with pytest.raises(ValueError, match="block_request"):
        Finding("d", "t", 0.5, "high", "r", block="address")


class BlockingDetector(Detector):
    """Test detector: blocks the address of any login from a bot user agent."""

    name = "bot_blocker"
    tag = "bot"

    def score(self, event, profile, context):
        if "sqlmap" not in event.user_agent:
            return []
        return [
            Finding(
                self.name,
                self.tag,
                0.9,
                "high",
                "scanner",
                flag=True,
                block={"scope": "address", "seconds": 120},
            )
        ]


def login_event(ip, username, *, ua="Mozilla/5.0", at=None, status=401):
    return Event(
        type="AUTH",
        timestamp=at or datetime.now(UTC),
        username=username,
        ip_address=ip,
        user_agent=ua,
        status=status,
        outcome="failure" if status >= 400 else "success",
    )


@pytest.mark.django_db
def test_detector_finding_requests_a_block():
    with override_settings(
        TRACKING_DETECTORS=[("tests.test_block_actions.BlockingDetector", {})],
        TRACKING_BUILTIN_RULES=False,
    ):
        ingest([login_event("192.0.2.77", "x", ua="sqlmap/1.7")])
        ingest([login_event("192.0.2.78", "y")])
    block = Block.objects.get()
    assert (block.scope, block.address, block.source) == ("address", "192.0.2.77/32", "bot_blocker")
    assert block.reason == "scanner"


@pytest.mark.django_db
def test_a_failing_block_step_keeps_the_batch(monkeypatch):
    def broken(*args, **kwargs):
        raise blocks.BlockError("boom")

    monkeypatch.setattr(blocks, "create_block", broken)
    now = datetime.now(UTC)
    result = ingest(
        [login_event("203.0.113.5", n, at=now + timedelta(seconds=i)) for i, n in enumerate("abc")]
    )
    assert result.stored == 3 and not Block.objects.exists()


@pytest.mark.django_db
def test_failed_attempts_teach_no_profile_and_account_block_needs_a_known_network(
    django_user_model,
):
    user = django_user_model.objects.create_user("zoe", "z@example.com", "pw")
    ingest(
        [Event(type="AUTH", user_id=user.pk, username="zoe", ip_address="192.0.2.1", status=401)]
    )
    assert not blocks.known_network("192.0.2.1", user.pk, "zoe")
    block = blocks.create_block("account", user=user, reason="x", seconds=60)
    assert blocks.find_block("192.0.2.1", "Zoe") == block
    assert blocks.find_block("192.0.2.1", "", user_id=user.pk) == block
    Profile.objects.update_or_create(
        key=f"u:{user.pk}", defaults={"data": {"v": 1, "k": {"ip": {"192.0.2.0/24": [0, 0, 1]}}}}
    )
    assert blocks.find_block("192.0.2.1", "zoe") is None
    assert blocks.find_block("192.0.3.1", "zoe") == block


# --- checks ---------------------------------------------------------------------------------


def _ids():
    return {m.id for m in checks.run_checks() if m.id and m.id.startswith("tracking.")}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"TRACKING_NEVER_BLOCK": "10.0.0.0/8"}, "tracking.E130"),
        ({"TRACKING_NEVER_BLOCK": ["10.0.0.0/8", "office"]}, "tracking.E131"),
        ({"TRACKING_BLOCK_CACHE_SECONDS": -1}, "tracking.E132"),
        ({"TRACKING_BLOCK_CACHE_SECONDS": "5"}, "tracking.E132"),
        (
            {
                "AUTHENTICATION_BACKENDS": [
                    "django.contrib.auth.backends.ModelBackend",
                    "tracking.backends.TrackingBackend",
                ]
            },
            "tracking.W130",
        ),
        (
            {"AUTHENTICATION_BACKENDS": ["tracking.backends.TrackingBackend"], "MIDDLEWARE": []},
            "tracking.W131",
        ),
    ],
)
def test_checks_name_bad_settings(settings, expected):
    with site_settings(**{k: v for k, v in settings.items() if k.startswith("TRACKING")}):
        with override_settings(
            **{k: v for k, v in settings.items() if not k.startswith("TRACKING")}
        ):
            assert expected in _ids()


def test_checks_pass_for_the_documented_install():
    with site_settings(TRACKING_NEVER_BLOCK=["192.0.2.0/24", "2001:db8::/32"]):
        assert not {i for i in _ids() if i[-4:-2] == "13"}


# --- assess ---------------------------------------------------------------------------------


def test_assess_is_exported_lazily():
    from tracking.respond.assess import assess

    assert "assess" in tracking.__all__ and tracking.assess is assess


@pytest.mark.django_db
def test_assess_judges_without_storing(client, django_user_model):
    from tracking.models import Activity, Counter

    now = datetime.now(UTC)
    ingest(
        [
            login_event("203.0.113.9", n, at=now - timedelta(seconds=30 - i))
            for i, n in enumerate(("ann", "ben"))
        ]
    )
    before = (Activity.objects.count(), list(Profile.objects.values()), Counter.objects.count())
    with site_settings():
        # A third account tried from the same address: stuffing, judged before answering.
        verdict = client.post(
            "/step-up/", {"username": "cid", "password": "x"}, **via_proxy("203.0.113.9")
        ).json()
        assert "credential_stuffing" in verdict["tags"] and verdict["risk"] >= 0.9
        assert "rule:trk-credential-stuffing" in verdict["findings"]
        assert verdict["blocked"] is False
        after = (Activity.objects.count(), list(Profile.objects.values()), Counter.objects.count())
        assert after == before and not Block.objects.exists()
        django_user_model.objects.create_user("dee", "d@example.com", "dee-pw")
        dee = {"username": "dee", "password": "dee-pw"}
        calm = client.post("/step-up/", dee, **via_proxy("198.51.100.7")).json()
        assert "credential_stuffing" not in calm["tags"] and calm["blocked"] is False
        blocks.create_block("address", address="198.51.100.7", reason="x", seconds=60)
        # authenticate() is refused now, and the middleware answers 403
        assert client.post("/step-up/", dee, **via_proxy("198.51.100.7")).status_code == 403
        request = RequestFactory().get("/", **via_proxy("198.51.100.7"))
        verdict = tracking.assess(request, user=django_user_model.objects.get(username="dee"))
        assert verdict.blocked and verdict.block.address == "198.51.100.7/32"
        with pytest.raises(ValueError, match="outcome"):
            tracking.assess(request, outcome="maybe")
