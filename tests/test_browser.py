"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The app is served by pytest-django's ``live_server`` (static files included). Screenshots go to
``artifacts/screenshots/``. These tests never skip: without ``/usr/bin/chromium`` they fail
with the command that installs it (``make test`` and ``.ci/run`` install it when missing).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client

from tracking.models import Activity, Finding, Review
from tracking.testing.factories import make_activity

UTC = dt_timezone.utc

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("TRACKING_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
DASHBOARD = "/api/tracking/dashboard/"
XSS = "<img src=x onerror=alert(1)>"

LAGOS = {
    "city": "Lagos",
    "country": "NG",
    "latitude": 6.5244,
    "longitude": 3.3792,
    "accuracy_radius": 20,
    "asn": 64680,
    "isp": "Eko Broadband",
    "ip_address": "105.112.1.10",
}
LONDON = {
    "city": "London",
    "country": "GB",
    "latitude": 51.5074,
    "longitude": -0.1278,
    "accuracy_radius": 10,
    "asn": 64600,
    "isp": "Thames Broadband",
    "ip_address": "81.2.69.10",
}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
            "`make test` does it when missing)."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # alongside it are ordinary blocking calls, so Django's async guard must stand aside.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def _release_tracking_threads():
    """conftest's fixture of this name, minus its ``asyncio.run`` in this thread: Playwright's
    sync API keeps an event loop running here, so the same clean-up runs in a helper thread."""
    yield
    import asyncio
    import threading

    from asgiref.sync import sync_to_async
    from django.db import connections

    from tracking.pipeline import writer

    writer.shutdown(5.0)
    helper = threading.Thread(target=lambda: asyncio.run(sync_to_async(connections.close_all)()))
    helper.start()
    helper.join()


class Console:
    """Collects what must never happen on the dashboard: JS errors, CSP violations, dialogs."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("response", self._response)

    def _console(self, message) -> None:
        # Failed loads are judged by URL in _response (the admin login page has no favicon).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.errors.append(f"{response.status} {response.url}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a payload ran: {self.dialogs}"
        assert self.errors == [], self.errors


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.console = Console(page)
    yield page
    context.close()


def shot(page, name: str, **kwargs) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kwargs)


def login(page, base: str, username: str, password: str = "pw") -> None:
    page.goto(f"{base}/admin/login/?next={DASHBOARD}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def sign_in(page, base: str, user) -> None:
    """A session made server-side and handed to the browser (the login form has its own test)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base}])
    page.goto(f"{base}{DASHBOARD}")


@pytest.fixture
def staff(django_user_model, settings):
    # Setting up the analyst is not part of the traffic the pages are checked against.
    settings.TRACKING_ACCOUNT_CHANGES = False
    user = django_user_model.objects.create_user("analyst", "a@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    settings.TRACKING_ACCOUNT_CHANGES = True
    return user


def flagged(when: datetime, username: str, reason: str, **fields) -> Activity:
    fields.setdefault("type", "AUTH")
    act = make_activity(
        timestamp=when,
        username=username,
        flagged=True,
        tags=["impossible_travel"],
        risk_score=0.92,
        severity="high",
        **fields,
    )
    Finding.objects.create(
        activity=act,
        timestamp=act.timestamp,
        detector="impossible_travel",
        tag="impossible_travel",
        score=0.92,
        severity="high",
        reason=reason,
        evidence={"speed_kmh": 7100},
        flag=True,
    )
    return act


def seed() -> dict[str, Activity]:
    """A day of ordinary traffic plus three open flagged items (newest first: carol, bob, xss)."""
    now = datetime.now(UTC)
    for i in range(40):
        make_activity(
            timestamp=now - timedelta(minutes=37 * i + 5),
            username=f"user{i % 5}",
            duration=float(20 + i * 7),
            **(LONDON if i % 3 else LAGOS),
        )
    return {
        "xss": flagged(now - timedelta(minutes=30), XSS, f"reason {XSS}", **LAGOS),
        "bob": flagged(
            now - timedelta(minutes=20),
            "bob",
            "London → Lagos, 4,980 km in 42 min = 7,100 km/h",
            **LAGOS,
        ),
        "carol": flagged(
            now - timedelta(minutes=10), "carol", "New network AS64680 Eko Broadband", **LAGOS
        ),
    }


def queue_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "#queue-body tr.queue-row", "rows => rows.map(r => r.dataset.id)"
    )


def test_staff_logs_in_sees_the_queue_and_dismisses_one(page, live_server, staff):
    acts = seed()
    login(page, live_server.url, "analyst")
    page.wait_for_url(f"**{DASHBOARD}")
    page.wait_for_selector("#queue-body tr.queue-row")
    assert queue_ids(page) == [str(acts[n].pk) for n in ("carol", "bob", "xss")]
    bob_row = page.locator(f'tr[data-id="{acts["bob"].pk}"]')
    assert "London → Lagos, 4,980 km in 42 min = 7,100 km/h" in bob_row.inner_text()
    assert "AS64680 Eko Broadband" in bob_row.inner_text() and "0.92" in bob_row.inner_text()
    # The payload is shown as text and never ran.
    xss_row = page.locator(f'tr[data-id="{acts["xss"].pk}"]')
    assert XSS in xss_row.locator(".user").inner_text()
    page.wait_for_selector('figure[data-chart="per_hour"][data-rendered="true"]')
    page.wait_for_selector("#feed-list li")
    shot(page, "dashboard", full_page=True)

    bob_row.locator("input.note").fill("travelling, confirmed by phone")
    bob_row.locator("button.dismiss").click()
    page.wait_for_selector(f'tr[data-id="{acts["bob"].pk}"]', state="detached", timeout=5000)
    assert queue_ids(page) == [str(acts["carol"].pk), str(acts["xss"].pk)]
    assert page.inner_text("#queue-count") == "2"

    bob = Activity.objects.get(pk=acts["bob"].pk)
    assert bob.review_status == "dismissed" and bob.reviewed_by_id == staff.pk
    review = Review.objects.get(activity_id=bob.pk)
    assert review.action == "dismissed" and review.note == "travelling, confirmed by phone"
    assert review.reviewer_username == "analyst"

    page.reload()
    page.wait_for_selector("#queue-body tr.queue-row")
    assert queue_ids(page) == [str(acts["carol"].pk), str(acts["xss"].pk)]
    page.console.assert_clean()


def test_keyboard_shortcuts_work_down_the_queue(page, live_server, staff):
    acts = seed()
    sign_in(page, live_server.url, staff)
    page.wait_for_selector("#queue-body tr.queue-row.selected")
    assert page.get_attribute("#queue-body tr.selected", "data-id") == str(acts["carol"].pk)
    page.keyboard.press("j")
    assert page.get_attribute("#queue-body tr.selected", "data-id") == str(acts["bob"].pk)
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.keyboard.press("c")  # confirm bob
    page.wait_for_selector(f'tr[data-id="{acts["bob"].pk}"]', state="detached", timeout=5000)
    assert Activity.objects.get(pk=acts["bob"].pk).review_status == "confirmed"
    # The selection moved on to the next item, which "d" dismisses.
    assert page.get_attribute("#queue-body tr.selected", "data-id") == str(acts["xss"].pk)
    page.keyboard.press("d")
    page.wait_for_selector(f'tr[data-id="{acts["xss"].pk}"]', state="detached", timeout=5000)
    assert Activity.objects.get(pk=acts["xss"].pk).review_status == "dismissed"

    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "filter-tags"
    page.keyboard.press("Escape")
    page.keyboard.press("o")  # open carol's detail page
    page.wait_for_url(f"**/dashboard/activity/{acts['carol'].pk}/")
    assert "New network AS64680 Eko Broadband" in page.inner_text("#findings")
    page.console.assert_clean()


def test_a_new_flagged_event_arrives_in_the_live_feed_within_two_seconds(page, live_server, staff):
    seed()
    sign_in(page, live_server.url, staff)
    page.wait_for_selector("#feed-status.live")
    page.wait_for_selector("#feed-list li")

    start = time.monotonic()
    intruder = flagged(
        datetime.now(UTC), "mallory", "London → Lagos, 4,980 km in 12 min = 24,900 km/h", **LAGOS
    )
    page.wait_for_selector(f'#feed-list li.flagged[data-id="{intruder.pk}"]', timeout=2000)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, elapsed
    item = page.locator(f'#feed-list li[data-id="{intruder.pk}"]')
    assert "mallory" in item.inner_text() and "24,900 km/h" in item.inner_text()
    assert page.locator("#feed-list li").first.get_attribute("data-id") == str(intruder.pk)
    # It also joined the flagged queue, on top.
    page.wait_for_selector(f'#queue-body tr[data-id="{intruder.pk}"]', timeout=2000)
    assert queue_ids(page)[0] == str(intruder.pk)
    assert page.inner_text("#queue-count") == "4"  # 3 seeded + the intruder
    shot(page, "live-feed")

    # An ordinary activity shows up too, without the flag.
    normal = make_activity(timestamp=datetime.now(UTC), username="walter", **LONDON)
    page.wait_for_selector(f'#feed-list li[data-id="{normal.pk}"]', timeout=2000)
    assert "flagged" not in (
        page.get_attribute(f'#feed-list li[data-id="{normal.pk}"]', "class") or ""
    )

    # A flagged row committed late, stamped 45 s before what the page already shows (a batched
    # writer, a Celery worker), still arrives within 2 seconds.
    start = time.monotonic()
    late = flagged(datetime.now(UTC) - timedelta(seconds=45), "trudy", "Late but flagged", **LAGOS)
    page.wait_for_selector(f'#feed-list li.flagged[data-id="{late.pk}"]', timeout=2000)
    assert time.monotonic() - start < 2.0
    page.wait_for_selector(f'#queue-body tr[data-id="{late.pk}"]', timeout=2000)
    assert page.inner_text("#queue-count") == "5"
    # In time order: after the intruder (newer), before the seeded items (older).
    assert queue_ids(page).index(str(late.pk)) == 1
    page.console.assert_clean()


def test_charts_render_non_empty_svg(page, live_server, staff):
    seed()
    sign_in(page, live_server.url, staff)
    names = ["per_hour", "per_day", "types", "countries", "networks", "detectors", "response_times"]
    for name in names:
        figure = page.wait_for_selector(f'figure[data-chart="{name}"][data-rendered]')
        assert figure.get_attribute("data-rendered") == "true", name
        assert int(figure.get_attribute("data-points")) > 0, name
        assert figure.query_selector_all("svg rect.bar"), name
    # Bars carry the numbers: 43 activities in all, 3 flagged.
    total = page.eval_on_selector_all(
        'figure[data-chart="per_day"] g.bucket title', "ts => ts.map(t => t.textContent)"
    )
    assert sum(int(t.split(": ")[1].split(" ")[0]) for t in total) == 43
    labels = page.inner_text('figure[data-chart="response_times"]')
    assert "p50" in labels and "p95" in labels and "p99" in labels
    assert page.inner_text("#tile-total") == "43" and page.inner_text("#tile-flagged") == "3"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#charts").screenshot(path=str(SCREENSHOTS / "charts.png"))
    page.console.assert_clean()


def test_charts_follow_the_page_filters(page, live_server, staff):
    seed()
    sign_in(page, live_server.url, staff)
    page.wait_for_selector("#queue-body tr.queue-row")
    page.fill('#filters input[name="country"]', "gb")
    page.press('#filters input[name="country"]', "Enter")
    page.wait_for_url("**country=gb**")
    page.wait_for_selector('figure[data-chart="countries"][data-rendered]')
    assert page.input_value('#filters input[name="country"]') == "GB"
    countries = page.inner_text('figure[data-chart="countries"]')
    assert "GB" in countries and "NG" not in countries
    assert page.inner_text("#queue-empty") == "No flagged activity matches these filters."
    page.console.assert_clean()


def test_detail_page_shows_timeline_findings_and_review(page, live_server, staff):
    acts = seed()
    make_activity(timestamp=acts["bob"].timestamp - timedelta(minutes=42), username="bob", **LONDON)
    sign_in(page, live_server.url, staff)
    page.wait_for_selector("#queue-body tr.queue-row")
    page.locator(f'tr[data-id="{acts["bob"].pk}"] a.open').click()
    page.wait_for_selector("#timeline")
    current = page.inner_text("#timeline tr.current")
    assert (
        "Lagos" in current and "London, GB" in current and "42 min" in current and "km/h" in current
    )
    assert "London → Lagos" in page.inner_text("#findings")
    assert "speed_kmh" in page.inner_text("#findings")
    shot(page, "detail", full_page=True)

    page.fill("#review-box input.note", "call the user")
    page.click("#review-box button.confirm")
    page.wait_for_selector("#history-list li q")
    assert "call the user" in page.inner_text("#history-list")
    assert Activity.objects.get(pk=acts["bob"].pk).review_status == "confirmed"
    page.console.assert_clean()


def test_non_staff_user_is_refused(page, live_server, django_user_model):
    plain = django_user_model.objects.create_user("visitor", "v@example.com", "pw")
    # The admin login refuses non-staff, so the session is made server-side and handed over.
    client = Client()
    client.force_login(plain)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    response = page.goto(f"{live_server.url}{DASHBOARD}")
    assert response.status == 403
    assert "Access denied" in page.inner_text("main")
    assert page.locator("#queue-body").count() == 0
    shot(page, "refused")

    feed = page.goto(f"{live_server.url}{DASHBOARD}feed/")
    assert feed.status == 403


def test_staff_without_permission_and_anonymous_are_refused(page, live_server, django_user_model):
    django_user_model.objects.create_user("clerk", "c@example.com", "pw", is_staff=True)
    response = page.goto(f"{live_server.url}{DASHBOARD}")
    assert "/admin/login/" in page.url  # anonymous: to the admin login
    login(page, live_server.url, "clerk")
    page.wait_for_load_state()
    assert page.url.endswith(DASHBOARD)
    assert "Access denied" in page.inner_text("main")
    response = page.goto(f"{live_server.url}{DASHBOARD}")
    assert response.status == 403


def test_admin_index_links_to_the_dashboard(page, live_server, staff):
    login(page, live_server.url, "analyst")
    page.goto(f"{live_server.url}/admin/")
    link = page.get_by_role("link", name="Security dashboard")
    assert link.count() == 1
    link.click()
    page.wait_for_url(f"**{DASHBOARD}")
    assert page.inner_text("h1") == "Security dashboard"


def test_dashboard_in_norwegian_includes_the_scripts_texts(page, live_server, staff, settings):
    """With LANGUAGE_CODE = "nb" the server-rendered page and what the script draws later
    (feed status, rows arriving by poll, chart legends) are Norwegian."""
    settings.LANGUAGE_CODE = "nb"
    seed()
    sign_in(page, live_server.url, staff)
    page.wait_for_selector("#feed-status.live")
    assert page.get_attribute("html", "lang") == "nb"
    assert page.inner_text("header h1") == "Sikkerhetsdashbord"
    assert page.inner_text("#feed-status").startswith("Direkte · sjekket ")
    intruder = flagged(datetime.now(UTC), "mallory", "Late night login", **LAGOS)
    row = page.wait_for_selector(f'#queue-body tr[data-id="{intruder.pk}"]', timeout=2000)
    assert row.query_selector("button.confirm").inner_text() == "Bekreft"
    assert row.query_selector("button.dismiss").inner_text() == "Avvis"
    assert row.query_selector("input.note").get_attribute("placeholder") == "notat"
    feed_item = page.wait_for_selector(f'#feed-list li[data-id="{intruder.pk}"]', timeout=2000)
    assert "flagget" in feed_item.inner_text()
    page.wait_for_selector('figure[data-chart="per_hour"][data-rendered="true"]')
    legend = page.text_content('figure[data-chart="per_hour"] .legend') or ""
    assert "aktivitet" in legend and "flagget" in legend
    shot(page, "dashboard-nb")
    page.console.assert_clean()


def test_a_block_is_lifted_from_the_dashboard_through_the_api(page, live_server, staff):
    from tracking.models import Block
    from tracking.respond import blocks

    block = blocks.create_block("address", address="203.0.113.50", reason="stuffing", seconds=600)
    sign_in(page, live_server.url, staff)
    row = page.locator(f'#blocks-body tr.block-row[data-id="{block.pk}"]')
    row.wait_for()
    assert "203.0.113.50" in row.inner_text()
    row.locator("input.reason").fill("our load test")
    row.locator("button.lift-button").click()
    page.wait_for_selector(f'#blocks-body tr.block-row.lifted[data-id="{block.pk}"]')
    block = Block.objects.get(pk=block.pk)
    assert block.lifted_at is not None and block.lift_reason == "our load test"
    assert block.lifted_by_username == "analyst"
    page.console.assert_clean()
