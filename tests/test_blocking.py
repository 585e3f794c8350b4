"""Blocking on a plain Django site (tests/blocksite): LoginView, the admin login and DRF's
token view behind a trusted proxy, refusing blocked sources with 403 while the owner at a
known address still logs in. Blocks come from the shipped rules through ingested events."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from unittest import mock

import pytest
from django.contrib.auth.signals import user_login_failed
from django.utils import timezone

from tests.blocksite import site_settings, via_proxy
from tracking.events import Event
from tracking.models import Activity, Block, Finding
from tracking.pipeline.ingest import ingest
from tracking.respond import blocks

UTC = dt_timezone.utc

pytestmark = [pytest.mark.django_db]

HOME = "198.51.100.20"  # alice's home network
STUFFER = "203.0.113.66"  # replays a leaked list
GUESSER = "192.0.2.50"  # guesses alice's password
ELSEWHERE = "100.64.7.7"  # a network alice never used
PASSWORD = "right-horse-battery"


@pytest.fixture
def site():
    with site_settings():
        yield


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        "alice", "alice@example.com", PASSWORD, is_staff=True
    )


def auth_event(ip, username, *, ok, user=None, at=None, **extra) -> Event:
    return Event(
        type="AUTH",
        timestamp=at or datetime.now(UTC),
        user_id=user.pk if user is not None else None,
        username=username,
        ip_address=ip,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        endpoint="/accounts/login/",
        method="POST",
        status=200 if ok else 401,
        outcome="success" if ok else "failure",
        **extra,
    )


def at_home(user, days=6):
    """The owner's history: successful logins from home over the past days."""
    now = datetime.now(UTC)
    ingest(
        [
            auth_event(HOME, user.username, ok=True, user=user, at=now - timedelta(days=d, hours=1))
            for d in range(days, 0, -1)
        ]
    )
    assert blocks.known_network(HOME, user.pk, user.username)


STUFFED = ("bob", "carol", "dave", "erin", "fay", "gus", "hal", "ivy")


def stuffing(ip=STUFFER, names=STUFFED):
    now = datetime.now(UTC)
    ingest(
        [
            auth_event(ip, name, ok=False, at=now - timedelta(seconds=40 - i))
            for i, name in enumerate(names)
        ]
    )


def brute_force(user, ip=GUESSER, attempts=6):
    now = datetime.now(UTC)
    ingest(
        [
            auth_event(ip, user.username, ok=False, user=user, at=now - timedelta(seconds=60 - i))
            for i in range(attempts)
        ]
    )


def login(client, ip, username="alice", password=PASSWORD, path="/accounts/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **via_proxy(ip, **extra))


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- credential stuffing: the address is blocked ------------------------------------------


def test_stuffing_address_refused_with_right_password_while_owner_at_home_logs_in(
    site, client, alice
):
    at_home(alice)
    stuffing()
    block = Block.objects.get()
    assert block.scope == "address" and block.address == f"{STUFFER}/32"
    assert block.source == "rule:trk-credential-stuffing-block"
    stored = Activity.objects.filter(ip_address=STUFFER).order_by("timestamp")
    assert block.activity_id == stored[7].id  # the eighth distinct account triggered it
    found = Finding.objects.get(
        activity_id=stored[7].id, detector="rule:trk-credential-stuffing-block"
    )
    assert found.evidence["block"] == {"scope": "address", "seconds": 3600}
    assert abs((block.expires_at - stored[7].timestamp).total_seconds() - 3600) < 1

    refused = login(client, STUFFER)
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("text/html")
    assert b"Refused" in refused.content
    assert not logged_in(client)

    home = login(client, HOME)
    assert home.status_code == 302 and logged_in(client)


def test_office_nat_with_a_few_typos_is_flagged_but_never_locked_out(site, client, alice):
    stuffing(ip=HOME, names=STUFFED[:5])  # five colleagues mistype within minutes
    assert Finding.objects.filter(tag="credential_stuffing").exists()  # flagged for review
    assert not Block.objects.exists()
    assert login(client, HOME).status_code == 302 and logged_in(client)


def test_stuffing_address_refused_at_admin_login_and_token_view(site, client, alice):
    at_home(alice)
    stuffing()
    admin = login(client, STUFFER, path="/admin/login/?next=/admin/")
    assert admin.status_code == 403 and not logged_in(client)
    token = login(client, STUFFER, path="/api/token/")
    assert token.status_code == 403
    assert token.json() == {"detail": mock.ANY, "code": "blocked"}
    assert login(client, HOME, path="/api/token/").json()["token"]
    assert login(client, HOME, path="/admin/login/?next=/admin/").status_code == 302


def test_refusal_is_json_for_json_clients(site, client, alice):
    stuffing()
    answer = login(client, STUFFER, HTTP_ACCEPT="application/json")
    assert answer.status_code == 403
    assert answer.json()["code"] == "blocked"
    assert "address" not in answer.content.decode()  # which block applies is not told


def test_refusal_sends_user_login_failed_and_is_recorded_as_blocked(site, client, alice):
    stuffing()
    failed = []

    def receiver(sender, credentials, request=None, **kwargs):
        failed.append((credentials["username"], request.META["HTTP_X_FORWARDED_FOR"]))

    user_login_failed.connect(receiver)
    try:
        answer = login(client, STUFFER, path="/tracked/login/")
    finally:
        user_login_failed.disconnect(receiver)
    assert answer.status_code == 403
    assert failed == [("alice", STUFFER)]
    recorded = Activity.objects.get(endpoint="/tracked/login/")
    assert recorded.outcome == "failure" and recorded.status == 403
    assert "blocked" in recorded.tags and recorded.ip_address == STUFFER


def test_forged_forwarded_header_from_untrusted_peer_does_not_escape_block(site, client, alice):
    stuffing()
    # The stuffer talks to the site directly and claims to be forwarded for alice's home.
    answer = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR=STUFFER,
        HTTP_X_FORWARDED_FOR=HOME,
    )
    assert answer.status_code == 403 and not logged_in(client)


# --- brute force on one account: the account from unknown networks -------------------------


def test_brute_force_blocks_account_from_new_addresses_not_from_owners_home(
    site, client, alice, django_user_model
):
    at_home(alice)
    django_user_model.objects.create_user("bob", "bob@example.com", "bob-pw")
    brute_force(alice)
    block = Block.objects.get()
    assert (block.scope, block.username, block.user_id) == ("account", "alice", alice.pk)
    assert block.address == ""

    assert login(client, ELSEWHERE).status_code == 403
    assert login(client, GUESSER).status_code == 403
    assert not logged_in(client)
    # The guesser's address itself is not blocked for other accounts.
    assert login(client, GUESSER, username="bob", password="bob-pw").status_code == 302
    client.logout()
    # The owner at home is never locked out.
    assert login(client, HOME).status_code == 302 and logged_in(client)


def test_account_block_matches_the_name_case_insensitively(site, client, alice):
    brute_force(alice)
    assert login(client, ELSEWHERE, username="ALICE").status_code == 403


def test_brute_force_without_history_blocks_owner_everywhere_until_expiry(site, client, alice):
    brute_force(alice)
    assert login(client, HOME).status_code == 403
    later = timezone.now() + timedelta(seconds=901)
    with mock.patch("tracking.respond.blocks.timezone.now", return_value=later):
        assert login(client, HOME).status_code == 302


# --- never-block, expiry, lifting -------------------------------------------------------


def test_never_block_addresses_cause_no_block_and_are_never_refused(client, alice):
    with site_settings(TRACKING_NEVER_BLOCK=["203.0.113.0/24"]):
        stuffing()
        assert not Block.objects.exists()
        assert Finding.objects.filter(tag="credential_stuffing").exists()  # still flagged
        with pytest.raises(blocks.BlockError, match="NEVER_BLOCK"):
            blocks.create_block("address", address="203.0.113.0/25", reason="x")
    with site_settings():
        blocks.create_block("address", address=STUFFER, reason="manual", seconds=600)
        assert login(client, STUFFER).status_code == 403
    with site_settings(TRACKING_NEVER_BLOCK=[f"{STUFFER}/32"]):
        assert login(client, STUFFER).status_code == 302  # made before the setting: ignored


def test_expired_block_refuses_no_one(site, client, alice):
    blocks.create_block("address", address=STUFFER, reason="manual", seconds=60)
    assert login(client, STUFFER).status_code == 403
    later = timezone.now() + timedelta(seconds=61)
    with mock.patch("tracking.respond.blocks.timezone.now", return_value=later):
        assert login(client, STUFFER).status_code == 302


def test_network_block_covers_its_addresses(site, client, alice):
    blocks.create_block("address", address="203.0.113.0/24", reason="hosting range")
    assert login(client, "203.0.113.200").status_code == 403
    assert login(client, "203.0.114.1").status_code == 302


def test_address_account_block_only_refuses_the_pair(site, client, alice, django_user_model):
    django_user_model.objects.create_user("bob", "bob@example.com", "bob-pw")
    blocks.create_block("address+account", address=GUESSER, user=alice, reason="pair")
    assert login(client, GUESSER).status_code == 403
    assert login(client, GUESSER, username="bob", password="bob-pw").status_code == 302
    client.logout()
    assert login(client, ELSEWHERE).status_code == 302


def test_block_lifted_in_another_process_is_seen_after_the_cache_time(site, client, alice):
    block = blocks.create_block("address", address=STUFFER, reason="manual", seconds=600)
    assert login(client, STUFFER).status_code == 403
    # Another process lifts it: this one keeps its snapshot for BLOCK_CACHE_SECONDS.
    Block.objects.filter(pk=block.pk).update(lifted_at=timezone.now(), lift_reason="elsewhere")
    assert login(client, STUFFER).status_code == 403
    with site_settings(TRACKING_BLOCK_CACHE_SECONDS=0):
        assert login(client, STUFFER).status_code == 302


def test_lift_in_this_process_is_seen_at_once(site, client, alice, staff_user):
    block = blocks.create_block("address", address=STUFFER, reason="manual", seconds=600)
    assert login(client, STUFFER).status_code == 403
    blocks.lift(block, by=staff_user, reason="false positive")
    assert login(client, STUFFER).status_code == 302


def test_old_imported_attack_blocks_nobody_today(site, alice):
    stuffing_at = datetime.now(UTC) - timedelta(days=3)
    ingest(
        [
            auth_event(STUFFER, name, ok=False, at=stuffing_at + timedelta(seconds=i))
            for i, name in enumerate(("bob", "carol", "dave"))
        ],
        source="import",
    )
    assert Finding.objects.filter(tag="credential_stuffing").exists()
    assert not Block.objects.exists()


def test_continuing_attack_makes_one_block(site):
    stuffing()
    stuffing(names=("jan", "kim", "lou"))
    assert Block.objects.count() == 1


def test_middleware_refuses_in_an_async_stack():
    import asyncio

    from asgiref.sync import iscoroutinefunction
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tracking.capture.marks import mark_refused
    from tracking.middleware import TrackingMiddleware

    async def view(request):
        if request.POST.get("username") == "alice":
            mark_refused(request, Block(scope="address", address="192.0.2.1/32"))
        return HttpResponse("wrong password", status=200)

    middleware = TrackingMiddleware(view)
    assert iscoroutinefunction(middleware)
    refused = asyncio.run(middleware(RequestFactory().post("/", {"username": "alice"})))
    assert refused.status_code == 403
    passed = asyncio.run(middleware(RequestFactory().post("/", {"username": "bob"})))
    assert passed.status_code == 200 and passed.content == b"wrong password"
