"""Tor exit addresses from a local list file (``TRACKING_TOR_EXIT_LIST``).

The file is what the Tor Project publishes, fetched by the operator (a cron job, never this
process): either the bulk exit list (one address per line) or the ``exit-addresses`` format
(``ExitAddress 192.0.2.1 2026-12-01 10:00:00`` lines; other lines ignored). Blank lines and
``#`` comments are skipped, as is anything that is not an IP address. The file is read when first
needed and again when its modification time changes (checked at most every
``RECHECK_SECONDS``); a missing or unreadable file means an empty list, logged once per change.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time

from tracking.conf import on_reload, tracking_settings

logger = logging.getLogger("tracking.enrich")

RECHECK_SECONDS = 60.0


def parse(lines) -> frozenset[str]:
    """The normalised addresses of a Tor exit list (either format)."""
    out: set[str] = set()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        token = parts[1] if parts[0] == "ExitAddress" and len(parts) > 1 else parts[0]
        if len(parts) > 1 and parts[0] != "ExitAddress":
            continue  # other exit-addresses lines (ExitNode, Published, LastStatus)
        try:
            out.add(str(ipaddress.ip_address(token)))
        except ValueError:
            continue
    return frozenset(out)


class _ExitList:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.addresses: frozenset[str] = frozenset()
        self.path: str = ""
        self.mtime: float | None = None
        self.checked = 0.0

    def current(self) -> frozenset[str]:
        path = str(tracking_settings.TOR_EXIT_LIST or "")
        if not path:
            return frozenset()
        now = time.monotonic()
        if path == self.path and now - self.checked < RECHECK_SECONDS:
            return self.addresses
        with self.lock:
            self.checked = now
            try:
                mtime = os.stat(path).st_mtime
            except OSError as exc:
                if self.path != path or self.mtime is not None:
                    logger.error("Tor exit list %s cannot be read: %s", path, exc)
                self.path, self.mtime, self.addresses = path, None, frozenset()
                return self.addresses
            if path != self.path or mtime != self.mtime:
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        self.addresses = parse(fh)
                except OSError as exc:
                    logger.error("Tor exit list %s cannot be read: %s", path, exc)
                    self.addresses = frozenset()
                self.path, self.mtime = path, mtime
            return self.addresses

    def reset(self) -> None:
        with self.lock:
            self.addresses, self.path, self.mtime, self.checked = frozenset(), "", None, 0.0


_exits = _ExitList()
on_reload(_exits.reset)


def is_exit(ip: str | None) -> bool:
    """Whether ``ip`` is on the configured Tor exit list."""
    if not ip:
        return False
    addresses = _exits.current()
    return bool(addresses) and ip in addresses
