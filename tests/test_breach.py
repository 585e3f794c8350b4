"""Breached passwords: k-anonymity range API (a loopback server), a local sorted hash file, the
time budget, the authentication-time hook and the ``breached_password`` finding."""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from detectors.breach import BreachedPassword
from tests.detection_helpers import ctx, obs
from tracking.checks import check_enrichment
from tracking.enrich import breach
from tracking.models import Activity, Finding

BREACHED = "correct horse battery staple"
SAFE = "a-long-passphrase-nobody-has-used-7f3a"


def digest(password: str) -> str:
    return hashlib.sha1(password.encode()).hexdigest().upper()


class RangeServer:
    """Answers ``/range/<prefix>`` like Pwned Passwords (with a padding entry)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.paths: list[str] = []
        known = digest(BREACHED)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.paths.append(self.path)
                time.sleep(delay)
                prefix = self.path.rsplit("/", 1)[-1].upper()
                lines = ["0018A45C4D1DEF81644B54AB7F969B88D65:1", f"{'F' * 35}:0"]
                if known.startswith(prefix):
                    lines.append(f"{known[5:]}:3730471")
                body = "\r\n".join(lines).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/range/{{prefix}}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_off_by_default():
    assert breach.check(BREACHED) is None


def test_range_api_sends_only_the_five_character_prefix():
    with (
        RangeServer() as server,
        override_settings(
            TRACKING_BREACHED_PASSWORDS=True,
            TRACKING_BREACHED_PASSWORDS_URL=server.url,
            TRACKING_BREACHED_PASSWORDS_TIMEOUT=5,
        ),
    ):
        assert breach.check(BREACHED) is True
        assert breach.check(SAFE) is False
    assert server.paths == [f"/range/{digest(BREACHED)[:5]}", f"/range/{digest(SAFE)[:5]}"]
    for path in server.paths:
        assert BREACHED not in path and digest(BREACHED)[5:] not in path


def test_a_slow_api_never_holds_a_login_past_the_budget():
    with (
        RangeServer(delay=2.0) as server,
        override_settings(
            TRACKING_BREACHED_PASSWORDS=True,
            TRACKING_BREACHED_PASSWORDS_URL=server.url,
            TRACKING_BREACHED_PASSWORDS_TIMEOUT=0.2,
        ),
    ):
        started = time.perf_counter()
        assert breach.check(BREACHED) is None
        assert time.perf_counter() - started < 0.6


def test_an_unreachable_api_means_unknown():
    with override_settings(
        TRACKING_BREACHED_PASSWORDS=True,
        TRACKING_BREACHED_PASSWORDS_URL="http://127.0.0.1:9/range/{prefix}",
    ):
        assert breach.check(BREACHED) is None


@pytest.mark.parametrize("with_counts", [True, False])
def test_local_sorted_hash_file_is_binary_searched(tmp_path, with_counts):
    hashes = sorted({digest(f"filler-{i}") for i in range(2000)} | {digest(BREACHED)})
    path = tmp_path / "pwned.txt"
    path.write_text(
        "".join(f"{h}:{i + 1}\n" if with_counts else f"{h}\n" for i, h in enumerate(hashes))
    )
    with override_settings(
        TRACKING_BREACHED_PASSWORDS=True, TRACKING_BREACHED_PASSWORDS_FILE=str(path)
    ):
        assert breach.check(BREACHED) is True
        assert breach.check(SAFE) is False
        # Every entry is found, first and last lines included.
        assert all(breach.check_file(h, str(path)) for h in (hashes[0], hashes[-1], hashes[777]))
        assert breach.check_file("0" * 40, str(path)) is False
        assert breach.check_file("F" * 40, str(path)) is False


def test_settings_are_checked(tmp_path):
    with override_settings(
        TRACKING_BREACHED_PASSWORDS=True,
        TRACKING_BREACHED_PASSWORDS_URL="ftp://example.net/{prefix}",
        TRACKING_BREACHED_PASSWORDS_TIMEOUT=30,
        TRACKING_BREACHED_PASSWORDS_FILE=str(tmp_path / "missing.txt"),
    ):
        ids = [m.id for m in check_enrichment()]
    assert ids.count("tracking.E101") == 2 and "tracking.W101" in ids


def test_the_detector_weighs_the_tag_of_a_successful_login_only():
    detector = BreachedPassword()
    ok = obs(tags=("breached_password",))
    (finding,) = detector.score(ok, None, ctx(ok))
    assert finding.tag == "breached_password" and finding.score == 0.6 and not finding.flag
    failed = obs(status=401, tags=("breached_password",))
    assert detector.score(failed, None, ctx(failed)) == []
    assert detector.score(obs(), None, ctx(obs())) == []


@pytest.mark.django_db(transaction=True)
def test_login_with_a_breached_password_is_recorded_with_the_finding_and_no_password(
    django_user_model, caplog
):
    from django.test import Client

    django_user_model.objects.create_user("carol", password=BREACHED)
    backends = [
        "tracking.enrich.breach.BreachedPasswordBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    with (
        RangeServer() as server,
        override_settings(
            AUTHENTICATION_BACKENDS=backends,
            TRACKING_BREACHED_PASSWORDS=True,
            TRACKING_BREACHED_PASSWORDS_URL=server.url,
            TRACKING_BREACHED_PASSWORDS_TIMEOUT=5,
        ),
    ):
        response = Client().post("/t/breach/login/", {"username": "carol", "password": BREACHED})
    assert response.status_code == 200
    act = Activity.objects.get(endpoint="/t/breach/login/")
    assert "breached_password" in act.tags
    finding = Finding.objects.get(activity=act, detector="breached_password")
    assert finding.severity == "medium"
    stored = " ".join(
        str(v) for v in Activity.objects.values_list("params", "headers", "tags", "username")
    )
    assert BREACHED not in stored and digest(BREACHED) not in stored
    assert BREACHED not in caplog.text


# --- TrackingBackend: the check on a plain site (tests/blocksite) -------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "form", "ok_status"),
    [
        ("/accounts/login/", True, 302),  # Django's LoginView
        ("/api/token/", False, 200),  # DRF's obtain_auth_token (a DRF Request)
    ],
)
def test_tracking_backend_checks_the_password_of_a_login_it_does_not_refuse(
    django_user_model, client, path, form, ok_status
):
    from tests.blocksite import site_settings, via_proxy

    django_user_model.objects.create_user("dora", password=BREACHED)
    data = {"username": "dora", "password": BREACHED}
    with (
        RangeServer() as server,
        site_settings(
            TRACKING_BREACHED_PASSWORDS=True,
            TRACKING_BREACHED_PASSWORDS_URL=server.url,
            # A loaded test machine must not turn the loopback answer into a timeout.
            TRACKING_BREACHED_PASSWORDS_TIMEOUT=5,
        ),
    ):
        response = client.post(path, data, **via_proxy("198.51.100.30"))
        assert response.status_code == ok_status
        assert server.paths == [f"/range/{digest(BREACHED)[:5]}"]
    (act,) = Activity.objects.filter(type="AUTH", outcome="success")
    assert "breached_password" in act.tags and act.username == "dora"
    assert Finding.objects.filter(activity=act, detector="breached_password").exists()
    assert BREACHED not in str(act.params) and digest(BREACHED) not in str(act.params)


@pytest.mark.django_db(transaction=True)
def test_tracking_backend_leaves_a_safe_password_untagged_and_never_checks_a_refused_one(
    django_user_model, client
):
    from tests.blocksite import site_settings, via_proxy
    from tracking.respond import blocks

    django_user_model.objects.create_user("dora", password=SAFE)
    with (
        RangeServer() as server,
        site_settings(
            TRACKING_BREACHED_PASSWORDS=True,
            TRACKING_BREACHED_PASSWORDS_URL=server.url,
            # A loaded test machine must not turn the loopback answer into a timeout.
            TRACKING_BREACHED_PASSWORDS_TIMEOUT=5,
        ),
    ):
        ok = client.post(
            "/accounts/login/", {"username": "dora", "password": SAFE}, **via_proxy("198.51.100.31")
        )
        assert ok.status_code == 302 and len(server.paths) == 1
        blocks.create_block("address", address="203.0.113.66", reason="manual", seconds=600)
        refused = client.post(
            "/accounts/login/",
            {"username": "dora", "password": BREACHED},
            **via_proxy("203.0.113.66"),
        )
        assert refused.status_code == 403
        assert len(server.paths) == 1  # a blocked source's password is never looked up
    rows = list(Activity.objects.filter(type="AUTH").order_by("timestamp"))
    assert [r.outcome for r in rows] == ["success", "failure"]
    assert not any("breached_password" in r.tags for r in rows)
