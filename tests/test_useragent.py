"""User-Agent parsing: the user-agents output shape, bots, garbage and huge strings."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tracking.enrich.useragent import parse_user_agent, truncate_user_agent

CASES = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        {
            "device": "PC",
            "os": "Windows 10",
            "browser": "Chrome 120.0.0",
            "is_mobile": False,
            "is_bot": False,
        },
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        {
            "device": "iPhone",
            "os": "iOS 17.1",
            "browser": "Mobile Safari 17.1",
            "is_mobile": True,
            "is_bot": False,
        },
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
        {"device": "iPad", "os": "iOS 16.0", "is_mobile": False, "is_bot": False},
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        {"device": "Samsung SM-S918B", "os": "Android 14", "is_mobile": True, "is_bot": False},
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        {"device": "Spider", "is_bot": True, "is_mobile": False},
    ),
    ("curl/8.4.0", {"browser": "curl 8.4.0", "is_bot": True}),
    ("python-requests/2.31.0", {"is_bot": True}),
]


@pytest.mark.parametrize(("ua", "expected"), CASES)
def test_known_agents(ua, expected):
    out = parse_user_agent(ua)
    for key, value in expected.items():
        assert out[key] == value, (key, out)


@pytest.mark.parametrize("ua", ["", None])
def test_empty(ua):
    assert parse_user_agent(ua) == {
        "device": "",
        "os": "",
        "browser": "",
        "is_mobile": False,
        "is_bot": False,
    }


def test_garbage_and_huge_never_raise():
    for ua in ["\x00\xff\ufffd" * 50, "(((((((" * 2000, "A" * 10_000, "Mozilla/5.0 (" + ";" * 9000]:
        out = parse_user_agent(ua)
        assert set(out) == {"device", "os", "browser", "is_mobile", "is_bot"}
        assert all(len(out[k]) <= 64 for k in ("device", "os", "browser"))


def test_truncated_to_512():
    assert len(truncate_user_agent("x" * 10_000)) == 512


@override_settings(TRACKING_MAX_USER_AGENT_LENGTH=10)
def test_truncation_setting():
    assert truncate_user_agent("x" * 100) == "x" * 10
