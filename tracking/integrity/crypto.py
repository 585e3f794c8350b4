"""Authenticated encryption of field values with a key ring of its own.

AES-256-GCM with the table, field and row id as associated data, so a ciphertext copied
into another row or column fails to decrypt. The first key in ``TRACKING_ENCRYPTION_KEYS``
encrypts; every key decrypts; each ciphertext names the key that made it. Values are JSON,
never pickle. Independent of ``SECRET_KEY`` on purpose: rotating one must not touch the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from tracking.conf import on_reload, tracking_settings
from tracking.entropy import random_bytes

PREFIX = "v1"


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


def generate_key() -> str:
    """A new random key in the format the settings expect."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def decode_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ImproperlyConfigured("encryption key is not urlsafe base64") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured("encryption key must decode to 32 bytes")
    return raw


def key_id(raw: bytes) -> str:
    return hashlib.sha256(b"tracking-key-id" + raw).hexdigest()[:8]


@lru_cache(maxsize=1)
def _keyring() -> tuple[tuple[str, AESGCM], ...]:
    keys = list(tracking_settings.ENCRYPTION_KEYS or [])
    if not keys:
        raise ImproperlyConfigured(
            "TRACKING_ENCRYPTION_KEYS is empty: generate one with "
            "`python manage.py tracking keygen` and add it to your settings."
        )
    return tuple((key_id(decode_key(k)), AESGCM(decode_key(k))) for k in keys)


on_reload(_keyring.cache_clear)


def current_key_id() -> str:
    return _keyring()[0][0]


# ``json.dumps(value, ensure_ascii=False, separators=...)`` builds an encoder per call; the
# same encoder, made once, gives the same text (two encryptions per stored activity).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encrypt(value: Any, aad: str) -> str:
    return encrypt_bytes(_COMPACT.encode(value).encode("utf-8"), aad)


def encrypt_bytes(data: bytes, aad: str) -> str:
    """``encrypt`` of JSON the caller already serialised (``decrypt`` parses it back)."""
    kid, aead = _keyring()[0]
    nonce = random_bytes(12)
    ct = aead.encrypt(nonce, data, aad.encode("utf-8"))
    return f"{PREFIX}:{kid}:{base64.urlsafe_b64encode(nonce + ct).decode('ascii')}"


def token_key_id(token: str) -> str | None:
    parts = token.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX else None


def decrypt(token: str, aad: str) -> Any:
    return json.loads(decrypt_bytes(token, aad).decode("utf-8"))


def decrypt_bytes(token: str, aad: str) -> bytes:
    """The authenticated plaintext (JSON bytes) of ``token``: ``decrypt`` without parsing,
    for callers that memoise work per distinct plaintext (the export)."""
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise DecryptionError("stored value is not a tracking ciphertext")
    _, kid, body = parts
    candidates = [aead for k, aead in _keyring() if k == kid]
    if not candidates:
        raise DecryptionError(
            f"no configured key has id {kid}: add the key that encrypted this value "
            "to TRACKING_ENCRYPTION_KEYS"
        )
    try:
        blob = base64.urlsafe_b64decode(body.encode("ascii"))
        plain = candidates[0].decrypt(blob[:12], blob[12:], aad.encode("utf-8"))
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise DecryptionError(
            "ciphertext failed authentication (wrong key, or moved from another row/field)"
        ) from exc
    return plain
