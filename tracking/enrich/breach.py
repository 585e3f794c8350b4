"""Breached passwords (off by default): is a password in a known breach corpus?

``check(password)`` answers ``True`` (breached), ``False`` (not found) or ``None`` (unknown:
switched off, no source, timeout or error — a login never waits on it). The password is
SHA-1 hashed in memory and never stored, logged or sent whole:

- with ``TRACKING_BREACHED_PASSWORDS_URL`` (Pwned Passwords' range API by default), only the
  first five hex characters of the hash leave the process (k-anonymity); the answer lists the
  suffixes sharing that prefix (``SUFFIX:COUNT`` lines; the ``Add-Padding`` header asks for
  padding entries with count 0, which never match). One request, bounded by
  ``TRACKING_BREACHED_PASSWORDS_TIMEOUT`` seconds in total;
- with ``TRACKING_BREACHED_PASSWORDS_FILE``, a local file of hashes sorted by hash (the
  downloadable Pwned Passwords list: ``SHA1HEX:COUNT`` lines, or bare hashes) is
  binary-searched: about 35 reads for a billion lines, nothing leaves the machine.

At login the password exists only where ``authenticate()`` runs: ``note_login(request,
password)`` checks it there and leaves only the verdict on the request
(``request.tracking_breached_password``), which the recorded login event turns into the
``breached_password`` tag (``tracking.capture.tracker``). ``tracking.backends.TrackingBackend``
calls it for every attempt it does not refuse; ``BreachedPasswordBackend`` does the same from
``AUTHENTICATION_BACKENDS`` for projects that do not list ``TrackingBackend``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

from tracking.conf import tracking_settings

logger = logging.getLogger("tracking.enrich")

# The request attribute the verdict is left under (never the password), and the tag the
# recorded login gets (``detectors.breach.BreachedPassword`` turns it into a finding).
REQUEST_ATTRIBUTE = "tracking_breached_password"
TAG = "breached_password"
HASH_LENGTH = 40


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def _in_range_answer(text: str, suffix: str) -> bool:
    for line in text.splitlines():
        found, _, count = line.strip().partition(":")
        if found.upper() == suffix:
            try:
                return int(count or "1") > 0  # padding entries have count 0
            except ValueError:
                return True
    return False


def check_range_api(digest: str, url: str, timeout: float) -> bool | None:
    """Ask a Pwned-Passwords-style range API for the 5-character prefix of ``digest``."""
    prefix, suffix = digest[:5], digest[5:]
    target = (
        url.replace("{prefix}", prefix) if "{prefix}" in url else url.rstrip("/") + "/" + prefix
    )
    half = timeout / 2
    try:
        # Imported here: requests and its dependencies add ~4 MiB to every process that
        # loads this module (web workers, exports), and only this remote lookup uses it.
        import requests

        response = requests.get(
            target, timeout=(half, half), headers={"Add-Padding": "true"}, allow_redirects=False
        )
        response.raise_for_status()
    except Exception as exc:  # any failure means "unknown", never a slow login
        logger.warning("breached-password check unavailable: %s", type(exc).__name__)
        return None
    return _in_range_answer(response.text, suffix)


def _line_hash(line: bytes) -> str:
    return line.split(b":", 1)[0].strip().decode("ascii", "replace").upper()


def check_file(digest: str, path: str) -> bool | None:
    """Binary search for ``digest`` in a file of hashes sorted by hash (one per line)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            low, high = 0, size
            # Invariant: every line starting before ``low`` sorts below ``digest``.
            while low < high:
                middle = (low + high) // 2
                fh.seek(middle)
                if middle:
                    fh.readline()  # skip to the next line start
                start = fh.tell()
                line = fh.readline()
                if not line or start >= high:
                    high = middle
                    continue
                found = _line_hash(line)
                if found == digest:
                    return True
                if found < digest:
                    low = fh.tell()
                else:
                    high = middle
            fh.seek(low)
            line = fh.readline()
            return bool(line) and _line_hash(line) == digest
    except OSError as exc:
        logger.error("breached-password file %s cannot be read: %s", path, exc)
        return None


def check(password: str) -> bool | None:
    """Whether ``password`` is known breached (None: switched off, no answer in time)."""
    if not tracking_settings.BREACHED_PASSWORDS or not isinstance(password, str) or not password:
        return None
    digest = sha1_hex(password)
    path = tracking_settings.BREACHED_PASSWORDS_FILE
    if path:
        return check_file(digest, str(path))
    url = tracking_settings.BREACHED_PASSWORDS_URL
    if url:
        return check_range_api(
            digest, str(url), float(tracking_settings.BREACHED_PASSWORDS_TIMEOUT)
        )
    return None


def note_login(request: Any, password: str) -> bool | None:
    """Check the password being tried and leave only the verdict on ``request`` (the Django
    request behind a DRF one, which is what the recorded event is built from)."""
    if request is None:
        return None
    result = check(password)
    try:
        # The Django request behind a DRF one (``_request``), or the request itself.
        setattr(getattr(request, "_request", request), REQUEST_ATTRIBUTE, result)
    except AttributeError:  # an object without attributes (a test double): nothing to keep
        pass
    return result


class BreachedPasswordBackend:
    """An authentication backend that never authenticates: listed *first* in
    ``AUTHENTICATION_BACKENDS``, it sees the password of every login attempt, checks it
    (``note_login``) and returns ``None`` so the real backends decide. Not needed (and not to
    be listed as well) where ``tracking.backends.TrackingBackend`` is, which does the same."""

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if password:
            note_login(request, password)
        return None

    def get_user(self, user_id: Any) -> None:
        return None
