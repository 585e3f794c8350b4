"""Blocks listed and lifted through the API (permissions, audit, signals), the admin and the
dashboard's panel."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.blocksite import site_settings, via_proxy
from tracking import signals
from tracking.models import Block
from tracking.respond import blocks

pytestmark = [pytest.mark.django_db]

LIST = "/api/tracking/blocks/"


@pytest.fixture
def site():
    with site_settings():
        yield


@pytest.fixture
def block():
    return blocks.create_block(
        "address", address="203.0.113.66", reason="credential stuffing", seconds=3600
    )


def staff_with(django_user_model, name, *codenames):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="tracking", codename__in=codenames)
    )
    client = APIClient()
    client.force_login(user)
    return user, client


def lift_url(block):
    return f"{LIST}{block.pk}/lift/"


def test_staff_lists_blocks_with_status_filters(site, staff_client, block):
    lifted = blocks.create_block("account", username="Alice", reason="brute force", seconds=60)
    blocks.lift(lifted, by=None, reason="owner called")
    rows = staff_client.get(LIST).json()["results"]
    assert [r["id"] for r in rows] == [lifted.pk, block.pk]
    active = staff_client.get(LIST, {"status": "active"}).json()["results"]
    assert [(r["id"], r["status"], r["address"]) for r in active] == [
        (block.pk, "active", "203.0.113.66/32")
    ]
    only_lifted = staff_client.get(LIST, {"status": "lifted"}).json()["results"]
    assert only_lifted[0]["username"] == "alice" and only_lifted[0]["lift_reason"] == "owner called"
    assert staff_client.get(LIST, {"username": "ALICE"}).json()["count"] == 1
    assert staff_client.get(LIST, {"address": "203.0.113.66"}).json()["count"] == 1
    assert staff_client.get(LIST, {"status": "maybe"}).status_code == 400
    assert staff_client.get(LIST, {"address": "not-an-ip"}).status_code == 400
    assert staff_client.get(f"{LIST}{block.pk}/").json()["reason"] == "credential stuffing"


def test_lift_through_api_is_audited_and_unblocks(
    site, client, staff_user, staff_client, block, django_capture_on_commit_callbacks
):
    django_user = type(staff_user)
    django_user.objects.create_user("alice", "a@example.com", "pw-alice")
    login = {"username": "alice", "password": "pw-alice"}
    assert client.post("/accounts/login/", login, **via_proxy("203.0.113.66")).status_code == 403
    lifted = []

    def receiver(sender, block, by, reason, **kwargs):
        lifted.append((block.pk, by.pk, reason))

    signals.block_lifted.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            answer = staff_client.post(
                lift_url(block), {"reason": "customer's office NAT"}, format="json"
            )
    finally:
        signals.block_lifted.disconnect(receiver)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "lifted" and body["lifted_by"] == "staff"
    block.refresh_from_db()
    assert block.lifted_by == staff_user and block.lift_reason == "customer's office NAT"
    assert block.lifted_at is not None
    assert lifted == [(block.pk, staff_user.pk, "customer's office NAT")]
    assert client.post("/accounts/login/", login, **via_proxy("203.0.113.66")).status_code == 302
    again = staff_client.post(lift_url(block), {"reason": "twice"}, format="json")
    assert again.status_code == 400 and "already lifted" in str(again.json())


def test_lift_needs_a_reason(site, staff_client, block):
    answer = staff_client.post(lift_url(block), {}, format="json")
    assert answer.status_code == 400 and "reason" in answer.json()
    assert staff_client.post(lift_url(block), {"reason": "  "}, format="json").status_code == 400
    block.refresh_from_db()
    assert block.lifted_at is None


def test_anonymous_is_refused(site, block):
    client = APIClient()
    assert client.get(LIST).status_code in (401, 403)
    assert client.post(lift_url(block), {"reason": "x"}, format="json").status_code in (401, 403)
    block.refresh_from_db()
    assert block.lifted_at is None


def test_non_staff_is_refused_whatever_permissions(site, django_user_model, block):
    user = django_user_model.objects.create_user("plainish", "p@example.com", "pw")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    client = APIClient()
    client.force_login(user)
    assert client.get(LIST).status_code == 403
    assert client.post(lift_url(block), {"reason": "x"}, format="json").status_code == 403


def test_viewing_staff_cannot_lift(site, django_user_model, block):
    _, client = staff_with(django_user_model, "viewer", "view_activity")
    assert client.get(LIST).status_code == 200
    assert client.post(lift_url(block), {"reason": "x"}, format="json").status_code == 403
    block.refresh_from_db()
    assert block.lifted_at is None
    _, reviewer = staff_with(django_user_model, "reviewer", "view_activity", "review_activity")
    assert reviewer.post(lift_url(block), {"reason": "ok"}, format="json").status_code == 200


def test_created_signal_after_commit_and_failing_receiver_never_rolls_back(
    site, django_capture_on_commit_callbacks, caplog
):
    seen = []

    def broken(sender, block, **kwargs):
        raise RuntimeError("receiver bug")

    def good(sender, block, **kwargs):
        seen.append(block.pk)

    signals.block_created.connect(broken)
    signals.block_created.connect(good)
    try:
        with caplog.at_level(logging.ERROR, logger="tracking.respond"):
            with django_capture_on_commit_callbacks(execute=False) as callbacks:
                made = blocks.create_block("address", address="192.0.2.9", reason="x")
                assert seen == []  # not before commit
            for callback in callbacks:
                callback()
    finally:
        signals.block_created.disconnect(broken)
        signals.block_created.disconnect(good)
    assert seen == [made.pk]
    assert Block.objects.filter(pk=made.pk).exists()
    assert "receiver" in caplog.text and "receiver bug" in caplog.text


def test_create_block_validates(site):
    with pytest.raises(blocks.BlockError, match="scope"):
        blocks.create_block("everything", address="192.0.2.1", reason="x")
    with pytest.raises(blocks.BlockError, match="needs an address"):
        blocks.create_block("address", reason="x")
    with pytest.raises(blocks.BlockError, match="needs an account"):
        blocks.create_block("account", reason="x")
    with pytest.raises(blocks.BlockError, match="not an IP"):
        blocks.create_block("address", address="example.com", reason="x")
    assert not Block.objects.exists()


# --- admin --------------------------------------------------------------------------------


def test_admin_lists_and_lifts_with_reason(site, client, staff_user, block):
    client.force_login(staff_user)
    listing = client.get("/admin/tracking/block/")
    assert listing.status_code == 200 and b"203.0.113.66/32" in listing.content
    page = client.get(f"/admin/tracking/block/{block.pk}/change/")
    assert page.status_code == 200 and b'name="lift_reason"' in page.content
    assert b'name="address"' not in page.content  # nothing else is editable
    client.post(f"/admin/tracking/block/{block.pk}/change/", {"lift_reason": "known partner"})
    block.refresh_from_db()
    assert block.lifted_by == staff_user and block.lift_reason == "known partner"
    assert client.get("/admin/tracking/block/add/").status_code == 403
    assert client.post(f"/admin/tracking/block/{block.pk}/delete/").status_code == 403
    assert Block.objects.filter(pk=block.pk).exists()


def test_admin_needs_review_permission_to_lift(site, client, django_user_model, block):
    viewer, _ = staff_with(django_user_model, "viewer", "view_activity")
    client.force_login(viewer)
    page = client.get(f"/admin/tracking/block/{block.pk}/change/")
    assert page.status_code == 200 and b'name="lift_reason"' not in page.content
    client.post(f"/admin/tracking/block/{block.pk}/change/", {"lift_reason": "sneaky"})
    block.refresh_from_db()
    assert block.lifted_at is None


# --- dashboard ----------------------------------------------------------------------------


def test_dashboard_has_blocks_panel_with_external_script(site, client, staff_user):
    client.force_login(staff_user)
    page = client.get("/api/tracking/dashboard/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="blocks"' in html and 'data-blocks-url="/api/tracking/blocks/?status=active' in html
    assert "tracking/dashboard/blocks.js" in html
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert "<script>" not in html  # no inline code


def test_dashboard_script_lifts_through_the_api():
    from pathlib import Path

    import tracking

    script = Path(tracking.__file__).parent / "static/tracking/dashboard/blocks.js"
    text = script.read_text()
    assert '"blocks/" + id + "/lift/"' in text and '"X-CSRFToken"' in text
    assert "innerHTML" not in text  # rows are built with textContent only
