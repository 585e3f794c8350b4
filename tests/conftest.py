"""Shared fixtures: users and API clients, the spool directory, live events, database faults.
Fixtures only one test module needs live in that module."""

from __future__ import annotations

import pytest


@pytest.fixture
def staff_user(django_user_model):
    """A staff user with every tracking permission."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    return user


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user("plain", "plain@example.com", "pw")


@pytest.fixture(scope="session", autouse=True)
def geoip_databases():
    """The synthetic GeoLite2 databases in ``settings.GEOIP_PATH`` (built once, atomically)."""
    from django.conf import settings

    from tracking.simulator.geoip import build_databases

    build_databases(settings.GEOIP_PATH)
    return settings.GEOIP_PATH


# --- review API (tests/test_api_*.py, test_admin.py) ------------------------------------


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def staff_client(staff_user):
    """An API client logged in (session) as ``staff_user`` (every tracking permission)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(staff_user)
    return client


@pytest.fixture(autouse=True)
def _clear_throttle_cache():
    """Throttle counters live in the default cache; never leak them between tests."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _forget_process_caches():
    """Per-process caches that trust the database for a few seconds (latest model version)
    would otherwise carry one test's rows into the next test's rolled-back database."""
    from tracking.detection.modelstore import forget_model_versions
    from tracking.respond import blocks

    forget_model_versions()
    blocks.forget()
    yield
    forget_model_versions()
    blocks.forget()


@pytest.fixture(autouse=True)
def _release_tracking_threads(request):
    """After a transactional test, stop the background writer and close the connections of
    asgiref's worker thread, so no thread holds the test database (PostgreSQL refuses to
    drop a database with open sessions)."""
    yield
    from tracking.pipeline import writer

    current = writer._writer
    if current is not None and current.thread is not None and current.thread.is_alive():
        writer.shutdown(5.0)  # never let a writer thread outlive the test that started it
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional:
        return
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    asyncio.run(sync_to_async(connections.close_all)())


# --- faults (test_faults.py, test_spool.py, test_tasks.py) --------------------------------


@pytest.fixture
def database_down():
    """Statements on the tracking tables fail as in a database outage (every thread) until
    ``database_down.stop()`` or the end of the test (``tracking.testing.faults``)."""
    from tracking.testing.faults import DatabaseFault, refuse

    fault = DatabaseFault(refuse).start()
    yield fault
    fault.stop()


# --- the write path (test_spool.py, test_faults.py, test_health.py, test_ingest*.py, ...) --


# One finding per DATA or AUTH event: a verdict the synchronous-path tests can wait for.
SEEN_RULE = (
    "title: seen\nid: sync-seen\nlevel: high\n"
    "detection: {sel: {type: [DATA, AUTH]}, condition: sel}\n"
    "action: {flag: true, tags: [sync_seen], severity: high}\n"
)


@pytest.fixture
def seen_rule(settings, tmp_path):
    """The rule ``SEEN_RULE`` loaded; returns the tag it sets."""
    (tmp_path / "seen.yml").write_text(SEEN_RULE)
    settings.TRACKING_RULE_DIRS = [str(tmp_path)]
    return "sync_seen"


@pytest.fixture
def spool_dir(settings, tmp_path):
    """An empty spool directory of this test's own (``TRACKING_SPOOL_DIR``)."""
    path = tmp_path / "spool"
    path.mkdir()
    settings.TRACKING_SPOOL_DIR = str(path)
    return path


def _live_event(**fields):
    from datetime import datetime
    from datetime import timezone as dt_timezone

    UTC = dt_timezone.utc

    from tracking.events import Event

    base = dict(
        type="API",
        timestamp=datetime.now(UTC),
        username="bob",
        ip_address="81.2.69.142",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/115.0",
        endpoint="/api/items/",
        method="GET",
        status=200,
        headers={"Accept": "*/*"},
        params={"query": {"page": "1", "token": "t0p"}},
    )
    base.update(fields)
    return Event(**base)


def _live_events(n, tag="e", **fields):
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    UTC = dt_timezone.utc

    now = datetime.now(UTC)
    return [
        _live_event(
            endpoint=f"/{tag}/{i}",
            username=f"{tag}{i}",
            timestamp=now - timedelta(seconds=n - i),
            params={"query": {"password": "hunter2"}},
            **fields,
        )
        for i in range(n)
    ]


@pytest.fixture
def make_event():
    """``make_event(**fields)``: a realistic live ``Event`` (an API call by ``bob``, now);
    any field can be overridden."""
    return _live_event


@pytest.fixture
def make_events():
    """``make_events(n, tag="e", **fields)``: ``n`` live events one second apart ending now,
    endpoints ``/<tag>/<i>``, users ``<tag><i>``, a password in the query (redacted)."""
    return _live_events
