"""Canonical content of an activity row and its MAC: the one definition sealing, the writer
and ``tracking verify`` share.

The MAC covers what was *recorded* (request, enrichment, verdict at write time), not the
review state, which changes by design (see ``models.Activity``). It is computed over the
decrypted headers/params so that re-encrypting under a new key keeps rows verifiable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import operator
import re
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tracking.conf import on_reload, tracking_settings

# Order matters: it is part of the canonical form. Append only, never reorder.
CANONICAL_FIELDS = (
    "id",
    "timestamp",
    "type",
    "tags",
    "username",
    "session_id",
    "ip_address",
    "remote_addr",
    "forwarded_for",
    "isp",
    "asn",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "accuracy_radius",
    "device",
    "os",
    "browser",
    "is_mobile",
    "is_bot",
    "user_agent",
    "endpoint",
    "method",
    "status",
    "headers",
    "params",
    "duration",
    "risk_score",
    "severity",
)

# Fields added after rows were first written: covered as one trailing ``{name: value}``
# object holding the non-empty ones, so a row without them keeps the canonical bytes (and the
# MAC) it was written with. Setting or clearing one later changes the bytes either way.
OPTIONAL_FIELDS = ("outcome",)

# The canonical JSON (what ``json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
# sort_keys=True)`` gives), with its encoder made once: this runs for every row written,
# sealed and verified.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical_bytes(activity: Any) -> bytes:
    """Deterministic bytes for an Activity (or any object with the canonical attributes):
    the JSON list of ``CANONICAL_FIELDS`` values, the id as text, the timestamp in ISO form
    with microseconds, tags sorted, floats as the ``repr`` of the value rounded to 6 places,
    then one ``{name: value}`` object of the non-empty ``OPTIONAL_FIELDS`` if there is any
    (``tests/test_integrity.py`` pins this form: stored MACs depend on it)."""
    # One C call reads every attribute (decrypting headers and params through their
    # descriptor); then the three special fields and any float.
    doc = [repr(round(v, 6)) if isinstance(v, float) else v for v in _read_canonical(activity)]
    doc[_ID] = str(activity.id)
    doc[_TIMESTAMP] = activity.timestamp.isoformat(timespec="microseconds")
    doc[_TAGS] = sorted(activity.tags or [])
    optional = {name: value for name in OPTIONAL_FIELDS if (value := getattr(activity, name, ""))}
    if optional:
        doc.append(optional)
    return _CANONICAL.encode(doc).encode()


_read_canonical = operator.attrgetter(*CANONICAL_FIELDS)
_ID, _TIMESTAMP, _TAGS = (CANONICAL_FIELDS.index(n) for n in ("id", "timestamp", "tags"))


def mac_and_leaf(activity: Any) -> tuple[str, str]:
    """The row MAC and the seal leaf hash of ``activity``, from one canonical form."""
    content = canonical_bytes(activity)
    return sign(content, "row"), hashlib.sha256(content).hexdigest()


def leaf_hash(activity: Any) -> str:
    return hashlib.sha256(canonical_bytes(activity)).hexdigest()


@lru_cache(maxsize=1)
def _seal_keys() -> tuple[tuple[str, bytes], ...]:
    keys = list(tracking_settings.SEAL_KEYS or [])
    if not keys:
        raise ImproperlyConfigured("TRACKING_SEAL_KEYS is empty (see `tracking keygen`).")
    out = []
    for k in keys:
        raw = k.encode() if isinstance(k, str) else bytes(k)
        out.append((hashlib.sha256(b"tracking-seal-key" + raw).hexdigest()[:8], raw))
    return tuple(out)


on_reload(_seal_keys.cache_clear)


def signing_key() -> tuple[str, bytes]:
    return _seal_keys()[0]


def key_by_id(kid: str) -> bytes | None:
    for k, raw in _seal_keys():
        if k == kid:
            return raw
    return None


def sign(message: bytes, purpose: str) -> str:
    """``"<key id>:<hex hmac>"`` over ``purpose || message`` with the current key."""
    kid, raw = signing_key()
    mac = hmac.digest(raw, purpose.encode() + b"\x00" + message, "sha256").hex()
    return f"{kid}:{mac}"


def check(message: bytes, purpose: str, signature: str) -> bool:
    kid, _, mac = signature.partition(":")
    raw = key_by_id(kid)
    if raw is None or not mac:
        return False
    expected = hmac.digest(raw, purpose.encode() + b"\x00" + message, "sha256").hex()
    return hmac.compare_digest(expected, mac)


def row_mac(activity: Any) -> str:
    return sign(canonical_bytes(activity), "row")


def row_ok(activity: Any) -> bool:
    return check(canonical_bytes(activity), "row", activity.mac or "")


@lru_cache(maxsize=1)
def _hash_key() -> bytes:
    configured = tracking_settings.HASH_KEY
    if configured:
        return configured.encode() if isinstance(configured, str) else bytes(configured)
    return hmac.new(signing_key()[1], b"tracking-session-hash", hashlib.sha256).digest()


on_reload(_hash_key.cache_clear)


def hash_session_key(session_key: str | None) -> str:
    """Keyed hash of a session key: correlates a session without storing it."""
    if not session_key:
        return ""
    return hmac.new(_hash_key(), session_key.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=1)
def _username_key() -> bytes:
    # Derived from the hash key with its own purpose: a masked name and a session hash are
    # never comparable.
    return hmac.new(_hash_key(), b"tracking-claimed-username", hashlib.sha256).digest()


on_reload(_username_key.cache_clear)

# "?" + at most two leading characters + "…" + 24 hex digits of the keyed hash.
_MASKED_USERNAME = re.compile(r"\?.{0,2}\u2026[0-9a-f]{24}", re.DOTALL)


def is_masked_username(name: str) -> bool:
    return bool(name) and _MASKED_USERNAME.fullmatch(name) is not None


def mask_username(name: str) -> str:
    """How a claimed username that matches no account is stored: a keyed hash (the same name
    always gives the same value, so rules still count distinct names and attempts per name)
    behind at most two of its first characters, never more than a quarter of it, for a
    reviewer (a password typed into the username field is not revealed). Idempotent."""
    if not name or is_masked_username(name):
        return name
    digest = hmac.new(_username_key(), name.encode(), hashlib.sha256).hexdigest()[:24]
    return f"?{name[: min(2, len(name) // 4)]}\u2026{digest}"
