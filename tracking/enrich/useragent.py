"""User-Agent → device, os, browser, is_mobile, is_bot, in the shape ``user-agents`` gave.

Parsing uses ua-parser 1.x with the compiled ``ua-parser-rs`` resolver (the ``regex`` extra),
falling back to the pure-Python resolver when it is not installed, behind an LRU cache.

Output format (stable; detectors and exports rely on it):

- ``browser``: family and version as ``user-agents`` printed it: ``"Chrome 120.0.0"``,
  ``"Mobile Safari 17.1"``; the family alone without a version; ``"Other"`` when unknown.
- ``os``: ``"Windows 10"``, ``"Mac OS X 10.15.7"``, ``"iOS 17.1"``, ``"Android 14"``,
  ``"Other"``.
- ``device``: the device family (``"iPhone"``, ``"Samsung SM-S918B"``, ``"Spider"``);
  ``"PC"`` for a desktop browser whose device family is unknown, ``"Other"`` otherwise.
- ``is_mobile``: a phone (tablets are not mobile, as in ``user-agents``);
  ``is_bot``: crawlers, HTTP libraries and headless browsers.

A garbage or huge string never raises: it is cut to ``MAX_USER_AGENT_LENGTH`` first.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

import ua_parser
from ua_parser import Domain

from tracking.conf import on_reload, tracking_settings

logger = logging.getLogger("tracking.enrich")

EMPTY: dict[str, Any] = {"device": "", "os": "", "browser": "", "is_mobile": False, "is_bot": False}

_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "Firefox OS"}
_TABLET = re.compile(r"iPad|Tablet|Kindle|Silk|SM-T\d|Nexus (7|9|10)\b|Tab\b", re.I)
_MOBILE_BROWSERS = {
    "Mobile Safari",
    "Chrome Mobile",
    "Chrome Mobile iOS",
    "Firefox Mobile",
    "Opera Mobile",
    "Samsung Internet",
    "UC Browser",
    "Mobile Safari UI/WKWebView",
}
_DESKTOP_OS = {
    "Windows",
    "Mac OS X",
    "Linux",
    "Ubuntu",
    "Chrome OS",
    "Fedora",
    "FreeBSD",
    "Debian",
    "macOS",
}
_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scrape|curl/|wget/|python-requests|python-urllib|"
    r"aiohttp|httpx|go-http-client|java/|okhttp|libwww|headlesschrome|phantomjs|"
    r"facebookexternalhit|httpclient|postmanruntime|insomnia",
    re.I,
)


@lru_cache(maxsize=1)
def _parser():
    try:
        from ua_parser.regex import Resolver

        resolver = Resolver(ua_parser.load_lazy_builtins())
    except ImportError:  # the compiled extra is missing: slower, same answers
        resolver = ua_parser.BasicResolver(ua_parser.load_lazy_builtins())
    return ua_parser.Parser(resolver)


def _version(family: str, *parts: str | None) -> str:
    nums = [p for p in parts if p]
    return f"{family} {'.'.join(nums)}" if nums else family


def _parse(ua: str) -> dict[str, Any]:
    result = _parser()(ua, _all_domains())
    agent, os_, dev = result.user_agent, result.os, result.device
    browser = _version(agent.family, agent.major, agent.minor, agent.patch) if agent else "Other"
    os_name = _version(os_.family, os_.major, os_.minor, os_.patch) if os_ else "Other"
    dev_family = dev.family if dev else "Other"
    os_family = os_.family if os_ else "Other"
    bot = bool(_BOT.search(ua)) or dev_family == "Spider"
    tablet = bool(_TABLET.search(ua)) or dev_family in ("iPad", "Kindle")
    mobile = (
        not tablet
        and not bot
        and (
            os_family in _MOBILE_OS
            or (agent is not None and agent.family in _MOBILE_BROWSERS)
            or "Mobile" in ua
        )
    )
    if dev_family == "Other" and not mobile and not tablet and not bot and os_family in _DESKTOP_OS:
        dev_family = "PC"
    return {
        "device": dev_family[:64],
        "os": os_name[:64],
        "browser": browser[:64],
        "is_mobile": mobile,
        "is_bot": bot,
    }


@lru_cache(maxsize=1)
def _all_domains():
    return Domain.ALL


def _make_cached():
    size = int(tracking_settings.UA_CACHE_SIZE or 0)

    @lru_cache(maxsize=max(size, 1))
    def cached(ua: str) -> tuple:
        try:
            return tuple(_parse(ua).items())
        except Exception:  # a parser bug must never fail a request or a batch
            logger.warning("user-agent parse failed", exc_info=True)
            return tuple(EMPTY.items())

    return cached


_cached = None


def _reset() -> None:
    global _cached
    _cached = None


on_reload(_reset)


def parse_user_agent(ua: str | None) -> dict[str, Any]:
    """``{"device", "os", "browser", "is_mobile", "is_bot"}``; empty strings for no UA."""
    global _cached
    if not ua:
        return dict(EMPTY)
    ua = truncate_user_agent(ua)
    if _cached is None:
        _cached = _make_cached()
    return dict(_cached(ua))


def truncate_user_agent(ua: str | None) -> str:
    if not ua:
        return ""
    limit = int(tracking_settings.MAX_USER_AGENT_LENGTH)
    return str(ua)[:limit]
