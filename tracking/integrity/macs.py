"""Canonical content of an activity row and its MAC: the one definition sealing, the writer
and ``tracking verify`` share.

The MAC covers what was *recorded* (request, enrichment, verdict at write time), not the
review state, which changes by design (see ``models.Activity``). It is computed over the
decrypted headers/params so that re-encrypting under a new key keeps rows verifiable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import operator
import re
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tracking.conf import on_reload, tracking_settings

# The row formats: the fields each covers, in order (the order is part of the form). Rows
# name their format in their MAC ("2:<key id>:…"; version 1 MACs have no prefix), so rows
# written under an older format keep verifying. Adding a field to the current format is one
# line here, as long as no deployment stored rows under it yet; otherwise add a new version.
FORMAT_FIELDS: dict[int, tuple[str, ...]] = {
    1: (
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
    ),
}
# Version 2 also covers the account the row belongs to (``user_id``) and the attempt's
# ``outcome`` (success / failure / empty).
FORMAT_FIELDS[2] = (*FORMAT_FIELDS[1], "user_id", "outcome")
CURRENT_FORMAT = 2
CANONICAL_FIELDS = FORMAT_FIELDS[CURRENT_FORMAT]
# Fields of the current format that a legitimate path may still change on a sealed row:
# ``user_id`` becomes NULL when the account is deleted (``on_delete=SET_NULL``).
NULLABLE_ON_DELETE = ("user_id",)


# The canonical JSON (what ``json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
# sort_keys=True)`` gives), with its encoder made once: this runs for every row written,
# sealed and verified.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class _Form:
    """How one format reads a row: its field getter and the positions needing care."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.read = operator.attrgetter(*fields)
        self.id, self.timestamp, self.tags = (fields.index(n) for n in ("id", "timestamp", "tags"))
        self.user = fields.index("user_id") if "user_id" in fields else None


_FORMS = {version: _Form(fields) for version, fields in FORMAT_FIELDS.items()}


def _doc(activity: Any, version: int) -> tuple[list, _Form]:
    form = _FORMS[version]
    # One C call reads every attribute (decrypting headers and params through their
    # descriptor); then the special fields and any float.
    doc = [repr(round(v, 6)) if isinstance(v, float) else v for v in form.read(activity)]
    doc[form.id] = str(activity.id)
    doc[form.timestamp] = activity.timestamp.isoformat(timespec="microseconds")
    doc[form.tags] = sorted(activity.tags or [])
    if form.user is not None and doc[form.user] is not None:
        doc[form.user] = str(doc[form.user])  # integer and UUID primary keys alike
    return doc, form


def canonical_bytes(activity: Any, version: int = CURRENT_FORMAT) -> bytes:
    """Deterministic bytes for an Activity (or any object with the canonical attributes):
    the JSON list of the format's field values, the id as text, the timestamp in ISO form
    with microseconds, tags sorted, floats as the ``repr`` of the value rounded to 6 places
    (``tests/test_integrity.py`` pins this form: stored MACs depend on it). Version 2 adds
    the user's primary key as text (null without a user)."""
    return _CANONICAL.encode(_doc(activity, version)[0]).encode()


def _content(activity: Any, version: int) -> tuple[bytes, bytes]:
    """(bytes the MAC covers, bytes the seal leaf hashes).

    Version 1: the same bytes. Version 2: the leaf leaves the user out (a deleted account
    nulls ``user_id`` on sealed rows); the MAC binds it, so moving a row to another user
    fails the MAC, sealed or not.
    """
    doc, form = _doc(activity, version)
    content = _CANONICAL.encode(doc).encode()
    if form.user is None or doc[form.user] is None:
        return content, content
    doc[form.user] = None
    return content, _CANONICAL.encode(doc).encode()


def row_format(mac: str | None) -> int:
    """The format a stored row MAC was made with (1 for MACs without a version prefix)."""
    head, sep, _ = (mac or "").partition(":")
    return int(head) if sep and head.isdigit() and len(head) < 4 else 1


def _purpose(version: int) -> str:
    return "row" if version == 1 else f"row{version}"


def _sign_row(content: bytes, anonymous: bytes, version: int) -> str:
    if version == 1:
        return sign(content, "row")
    # Two 128-bit tags: over the content with its user, and with the user nulled (what
    # the row reads after its account is deleted). The column holds 80 characters.
    purpose = _purpose(version)
    kid, raw = signing_key()
    bound = hmac.digest(raw, purpose.encode() + b"\x00" + content, "sha256").hex()[:32]
    anon = hmac.digest(raw, purpose.encode() + b"-anon\x00" + anonymous, "sha256").hex()[:32]
    return f"{version}:{kid}:{bound}:{anon}"


def _check_row(content: bytes, activity: Any, version: int, mac: str) -> bool:
    if version == 1:
        return check(content, "row", mac)
    _, kid, bound, anon = (mac.split(":") + ["", "", "", ""])[:4]
    raw = key_by_id(kid)
    if raw is None or len(bound) != 32 or len(anon) != 32:
        return False
    purpose = _purpose(version)
    if _FORMS[version].user is not None and getattr(activity, "user_id", None) is None:
        # No user now: either recorded without one or its account was deleted since.
        expected = hmac.digest(raw, purpose.encode() + b"-anon\x00" + content, "sha256")
        return hmac.compare_digest(expected.hex()[:32], anon)
    expected = hmac.digest(raw, purpose.encode() + b"\x00" + content, "sha256")
    return hmac.compare_digest(expected.hex()[:32], bound)


def mac_and_leaf(activity: Any) -> tuple[str, str]:
    """The row MAC (current format) and the seal leaf hash of ``activity``."""
    content, leaf_content = _content(activity, CURRENT_FORMAT)  # the leaf's: user nulled
    return _sign_row(content, leaf_content, CURRENT_FORMAT), hashlib.sha256(
        leaf_content
    ).hexdigest()


def row_state(activity: Any) -> tuple[str, bool]:
    """(leaf hash, MAC valid) of a stored row, under the format its MAC names."""
    version = row_format(activity.mac)
    if version not in _FORMS:  # a format this code does not know: never valid
        return hashlib.sha256(_content(activity, CURRENT_FORMAT)[1]).hexdigest(), False
    content, leaf_content = _content(activity, version)
    valid = _check_row(content, activity, version, activity.mac or "")
    return hashlib.sha256(leaf_content).hexdigest(), valid


def leaf_hash(activity: Any) -> str:
    """The seal leaf of a stored row (under its MAC's format; a new row's: the current)."""
    mac = getattr(activity, "mac", "")
    version = row_format(mac) if mac else CURRENT_FORMAT
    _, leaf_content = _content(activity, version if version in _FORMS else CURRENT_FORMAT)
    return hashlib.sha256(leaf_content).hexdigest()


# A seal or hash key must carry 32 random bytes, like an encryption key: urlsafe base64 of
# at least 32 bytes (what `tracking keygen` prints) or 32+ raw bytes. Fewer than this many
# distinct byte values in 32+ bytes is a pattern, not randomness.
MIN_KEY_BYTES = 32
MIN_DISTINCT_BYTES = 12


def key_problem(key: Any) -> str | None:
    """Why ``key`` is not a strong HMAC key (None when it is); never echoes the key."""
    if isinstance(key, bytes | bytearray):
        material = bytes(key)
    elif isinstance(key, str):
        try:
            material = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return "is not urlsafe base64 of 32 random bytes (`tracking keygen`)"
    else:
        return f"must be a string, not {type(key).__name__}"
    if len(material) < MIN_KEY_BYTES:
        return (
            f"decodes to {len(material)} bytes; at least {MIN_KEY_BYTES} random bytes are required"
        )
    if len(set(material)) < MIN_DISTINCT_BYTES:
        return "is not random (too few distinct bytes)"
    return None


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
    return mac_and_leaf(activity)[0]


def row_ok(activity: Any) -> bool:
    return row_state(activity)[1]


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
