"""Redaction and size limits for headers and params, before anything is stored.

A key is sensitive when its *normalised* form (lower case, only letters and digits: so
``newPassword``, ``new_password`` and ``X-Auth-Token`` all normalise comparably) contains one
of the configured ``SENSITIVE_FIELDS`` or a built-in needle. Needles of three characters or
fewer (``cc``, ``pan``, ``cvv``...) only match a whole key, so ``access`` or ``company`` are
not redacted by accident.

Keys ending in ``key``/``keys`` (``access_key``, ``X-Upstream-Key``) or in ``pass``/``pw``
are sensitive as well. URLs in values (``Referer``, ``?next=/a?token=…``, ``redirect_uri``)
keep their scheme, host and path; their query string and fragment are replaced by
``?[REDACTED]``: secrets travel there (reset tokens, OAuth codes, ``#access_token=``).

Every function here is idempotent (the ingest step re-applies it to imported records) and
never raises on odd input: anything that is not JSON-like is stored as its ``repr``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from tracking.conf import on_reload, tracking_settings

REDACTED = "[REDACTED]"
DEPTH_MARKER = "[max depth exceeded]"
_TRUNCATED_RE = re.compile(r"…\[truncated \d+ chars\]$")

# Substring needles (normalised). Header names are here too: a header is a key like any other.
BUILTIN_NEEDLES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "cookie",
    "apikey",
    "privatekey",
    "sessionid",
    "cardnumber",
    "creditcard",
    "ccnumber",
    "cardcvc",
    "cardcvv",
    "cvv",
    "cvc",
    "securitycode",
    "signature",
    "pwd",
    "passcode",
    "credential",
    "jwt",
    "bearer",
    "codeverifier",
    "oauthverifier",
)
# Whole-key needles: too short (or too common as a substring) to match inside other words.
# ``code`` is the OAuth authorisation code of a callback (``?code=…&state=…``).
BUILTIN_EXACT = (
    "cc",
    "pan",
    "csc",
    "cvv2",
    "ccv",
    "pin",
    "cardno",
    "ccnum",
    "otp",
    "auth",
    "pass",
    "pw",
    "key",
    "code",
)
# Endings that make a key sensitive: ``access_key``, ``X-Upstream-Key``, ``user_pass``, ``newpw``.
BUILTIN_SUFFIXES = ("key", "keys", "pass", "pw")

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_key(key: Any) -> str:
    return _NON_ALNUM.sub("", str(key).lower())


@lru_cache(maxsize=1)
def _needles() -> tuple[tuple[str, ...], frozenset[str]]:
    substrings = set(BUILTIN_NEEDLES)
    exact = set(BUILTIN_EXACT)
    for item in tracking_settings.SENSITIVE_FIELDS or ():
        norm = normalise_key(item)
        if not norm:
            continue
        (exact if len(norm) <= 3 else substrings).add(norm)
    return tuple(sorted(substrings)), frozenset(exact)


@lru_cache(maxsize=8192)
def is_sensitive(key: Any) -> bool:
    """True when values under ``key`` must never be stored."""
    norm = normalise_key(key)
    if not norm:
        return False
    substrings, exact = _needles()
    return norm in exact or norm.endswith(BUILTIN_SUFFIXES) or any(n in norm for n in substrings)


def _clear() -> None:
    _needles.cache_clear()
    is_sensitive.cache_clear()


on_reload(_clear)


# A URL with a query string or fragment: absolute (``scheme://…``) or a path (``/…``), no
# white space. Its query and fragment are replaced; scheme, host and path are kept.
_URL_QUERY_RE = re.compile(r"^((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^\s?#]*|/[^\s?#]*)[?#]\S*$")
URL_QUERY_MARKER = "?" + REDACTED


def strip_url_query(text: str) -> str:
    """``https://h/p?token=x#y`` → ``https://h/p?[REDACTED]``; other text unchanged."""
    if "?" not in text and "#" not in text:
        return text
    match = _URL_QUERY_RE.match(text)
    if match is None:
        return text
    return match.group(1) + URL_QUERY_MARKER


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with a visible marker (idempotent)."""
    if len(text) <= limit:
        return text
    match = _TRUNCATED_RE.search(text)
    if match and match.start() <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def _clean(value: Any, depth: int, limit: int, max_depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return truncate(strip_url_query(value), limit)
    if isinstance(value, bytes):
        return truncate(strip_url_query(value.decode("utf-8", "replace")), limit)
    if depth >= max_depth:
        return DEPTH_MARKER
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if is_sensitive(k) else _clean(v, depth + 1, limit, max_depth))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1, limit, max_depth) for v in value]
    return truncate(repr(value), limit)


def redact_value(value: Any, *, depth: int = 0) -> Any:
    """Redact sensitive keys inside any JSON-like value; cut long strings and deep nesting."""
    return _clean(
        value,
        depth,
        int(tracking_settings.MAX_HEADER_LENGTH),
        int(tracking_settings.MAX_JSON_DEPTH),
    )


def redact_mapping(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Redacted copy of a mapping (query, form or JSON body)."""
    if not data:
        return {}
    out = redact_value(dict(data))
    return out if isinstance(out, dict) else {}


# Key of the marker naming how many headers were left out by the total budget.
HEADERS_OMITTED = "[headers omitted]"
_OMITTED_RE = re.compile(r"\[(\d+) headers not recorded")
# Recorded first when the budget is tight: what forensics needs most.
PRIORITY_HEADERS = frozenset(
    {
        "user-agent",
        "host",
        "referer",
        "origin",
        "content-type",
        "content-length",
        "accept",
        "accept-language",
        "x-forwarded-for",
        "x-real-ip",
        "x-requested-with",
    }
)


def redact_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Redacted, length-limited copy of ``{"Header-Name": "value"}``: each value cut to
    ``MAX_HEADER_LENGTH``, at most ``MAX_HEADER_COUNT`` headers and ``MAX_HEADERS_TOTAL``
    characters (names and values) in all; the rest is counted under ``HEADERS_OMITTED``."""
    limit = int(tracking_settings.MAX_HEADER_LENGTH)
    budget = int(tracking_settings.MAX_HEADERS_TOTAL)
    max_count = int(tracking_settings.MAX_HEADER_COUNT)
    items = list((headers or {}).items())
    omitted = 0
    cleaned: list[tuple[int, str, str]] = []
    for index, (name, value) in enumerate(items):
        name = str(name)
        if name == HEADERS_OMITTED:  # re-redaction of a recorded event: keep its count
            match = _OMITTED_RE.match(str(value))
            omitted += int(match.group(1)) if match else 0
            continue
        if is_sensitive(name):
            text = REDACTED
        else:
            text = value if isinstance(value, str) else str(value)
            text = truncate(strip_url_query(text), limit)
        cleaned.append((index, name, text))
    cleaned.sort(key=lambda item: (item[1].lower() not in PRIORITY_HEADERS, item[0]))
    kept: list[tuple[int, str, str]] = []
    used = 0
    for index, name, text in cleaned:
        cost = len(name) + len(text)
        if len(kept) >= max_count or used + cost > budget:
            omitted += 1
            continue
        kept.append((index, name, text))
        used += cost
    out = {name: text for _, name, text in sorted(kept)}
    if omitted:
        out[HEADERS_OMITTED] = (
            f"[{omitted} headers not recorded: over MAX_HEADER_COUNT or MAX_HEADERS_TOTAL]"
        )
    return out


def _size_bound(value: Any, stop: int) -> int:
    """Characters of ``value`` before JSON escaping, plus punctuation; stops early past ``stop``."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        total = 2
        for k, v in value.items():
            total += len(str(k)) + 4 + _size_bound(v, stop)
            if total > stop:
                break
        return total
    if isinstance(value, list):
        total = 2
        for v in value:
            total += _size_bound(v, stop) + 1
            if total > stop:
                break
        return total
    return 24  # numbers, booleans, null


def limit_params(params: dict[str, Any]) -> dict[str, Any]:
    """Keep the params document under ``MAX_PARAMS_LENGTH`` characters of JSON.

    A section that is too large (``query`` or ``body``) is replaced by a truncated JSON text
    of itself, so what is kept stays readable and the cut is visible.
    """

    limit = int(tracking_settings.MAX_PARAMS_LENGTH)
    # Serialising costs more than the rest of the request path; a cheap bound settles the
    # common small request (JSON escaping grows a character to at most 6).
    if _size_bound(params, limit // 6) * 6 <= limit:
        return params
    text = json.dumps(params, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return params
    share = max(limit // max(len(params), 1), 64)
    out: dict[str, Any] = {}
    for key, value in params.items():
        part = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
        out[key] = value if len(part) <= share else truncate(part, share)
    return out


def redact_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return limit_params(redact_mapping(params))
