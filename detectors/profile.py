"""Per-user detection state as a plain JSON document (stored by ``tracking.detection.profiles``).

The document keeps, per kind of value (ASN, country, city, device, user agent, browser, OS,
address block), ``[first_seen, last_seen, count]`` for the most recently used values, the last located
event, an hour-of-day histogram and short lists of recent request and failure times. Checking an
event against it is a few dictionary lookups; no history scan is ever needed.

Only events that *teach* (successful and not flagged) enter the known values; every event enters
the request/failure counters. A reviewer's dismissal teaches explicitly (``learn``), a
confirmation forgets what the attack introduced (``forget``).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from functools import lru_cache
from typing import Any

from detectors.observation import Observation

VERSION = 1
# Kinds of values remembered per user and what they are read from.
KINDS: tuple[str, ...] = ("asn", "country", "city", "device", "ua", "browser", "os", "ip")
MAX_VALUES = 64  # per kind; least recently seen values are forgotten first
MAX_TIMES = 64  # recent request / failure timestamps kept
MAX_LABELS = 200


@lru_cache(maxsize=16384)
def ua_key(user_agent: str) -> str:
    return hashlib.blake2b(user_agent.encode(), digest_size=8).hexdigest() if user_agent else ""


def ip_prefix(ip: str | None) -> str:
    """Addresses rotate inside a provider's block: /24 (IPv4) or /48 (IPv6) is the useful unit."""
    if not ip:
        return ""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    return ip.rsplit(".", 1)[0] + ".0/24"


def values_of(obs: Observation) -> dict[str, str]:
    """The remembered value of each kind for one event ("" when the event has none)."""
    return {
        "asn": "" if obs.asn is None else str(obs.asn),
        "country": obs.country or "",
        "city": f"{obs.country}/{obs.city}" if obs.city else "",
        "device": obs.device_key,
        "ua": ua_key(obs.user_agent),
        "browser": obs.browser or "",
        "os": obs.os or "",
        "ip": ip_prefix(obs.ip_address),
    }


class UserProfile:
    """Read and update one user's state document."""

    __slots__ = ("key", "data", "dirty", "created")

    def __init__(self, data: dict[str, Any] | None = None, key: str | None = None) -> None:
        self.key = key
        self.created = not data
        self.data: dict[str, Any] = data if data else {"v": VERSION}
        self.data.setdefault("k", {})
        self.dirty = False

    # --- reading -------------------------------------------------------------------
    @property
    def events(self) -> int:
        """How many events taught this profile."""
        return int(self.data.get("n", 0))

    @property
    def first_seen(self) -> float | None:
        return self.data.get("f")

    @property
    def last_seen(self) -> float | None:
        return self.data.get("l")

    def entry(self, kind: str, value: str) -> list | None:
        if not value:
            return None
        return self.data["k"].get(kind, {}).get(value)

    def known(self, kind: str, value: str, now: float, window: float | None = None) -> bool:
        """Whether ``value`` was used (in a teaching event) within ``window`` seconds of ``now``."""
        e = self.entry(kind, value)
        if e is None:
            return False
        return window is None or e[1] >= now - window

    def count(self, kind: str, value: str) -> int:
        e = self.entry(kind, value)
        return int(e[2]) if e else 0

    def total(self, kind: str) -> int:
        return int(self.data.get("t", {}).get(kind, 0))

    def values(self, kind: str) -> dict[str, list]:
        return self.data["k"].get(kind, {})

    @property
    def location(self) -> dict[str, Any] | None:
        return self.data.get("loc")

    @property
    def hours(self) -> list[int]:
        return self.data.get("h") or [0] * 24

    def recent(self, which: str, now: float, span: float) -> int:
        """Events ("req") or failures ("fail") in ``[now - span, now]`` (lists are sorted)."""
        times = self.data.get(which) or ()
        return bisect_right(times, now) - bisect_left(times, now - span)

    @property
    def novel_login(self) -> float | None:
        return self.data.get("novel")

    # --- updating ------------------------------------------------------------------
    def note(self, obs: Observation) -> None:
        """Record that an event happened (rates and failures), whether or not it teaches."""
        t = _seconds(obs)
        self._push("req", t)
        if obs.failed:
            self._push("fail", t)
        self.data["l"] = max(t, self.data.get("l") or t)
        if self.data.get("f") is None:
            self.data["f"] = t
        self.dirty = True

    def learn(self, obs: Observation) -> None:
        """Make this event's network, place and device known."""
        t = _seconds(obs)
        known = self.data["k"]
        totals = self.data.setdefault("t", {})
        for kind, value in values_of(obs).items():
            if not value:
                continue
            bucket = known.setdefault(kind, {})
            e = bucket.get(value)
            if e is None:
                if len(bucket) >= MAX_VALUES:
                    oldest = min(bucket, key=lambda v: bucket[v][1])
                    totals[kind] = max(0, totals.get(kind, 0) - bucket.pop(oldest)[2])
                bucket[value] = [t, t, 1]
            else:
                e[0] = min(e[0], t)
                e[1] = max(e[1], t)
                e[2] += 1
            totals[kind] = totals.get(kind, 0) + 1
        hours = self.data.get("h") or [0] * 24
        hours[obs.timestamp.hour] += 1
        self.data["h"] = hours
        self.data["n"] = self.events + 1
        self.dirty = True

    def set_location(self, obs: Observation) -> None:
        if not obs.has_position:
            return
        current = self.data.get("loc")
        if current and current.get("ts", 0) > obs.epoch:
            return  # an older event (late import) must not move the user back in time
        self.data["loc"] = {
            "lat": obs.latitude,
            "lon": obs.longitude,
            "r": obs.accuracy_radius or 0,
            "ts": obs.epoch,
            "city": obs.city,
            "country": obs.country,
            "asn": obs.asn,
        }
        self.dirty = True

    def mark_novel_login(self, obs: Observation) -> None:
        self.data["novel"] = max(obs.epoch, self.data.get("novel") or 0)
        self.dirty = True

    def forget(self, obs: Observation) -> None:
        """Undo what a confirmed attack taught: values first seen at this event are dropped."""
        t = _seconds(obs)
        totals = self.data.setdefault("t", {})
        for kind, value in values_of(obs).items():
            bucket = self.data["k"].get(kind, {})
            e = bucket.get(value)
            if e is not None and abs(e[0] - t) <= 1:
                totals[kind] = max(0, totals.get(kind, 0) - bucket.pop(value)[2])
        loc = self.data.get("loc")
        if loc and abs(loc.get("ts", 0) - t) <= 1:
            self.data.pop("loc")
        self.dirty = True

    def label(self, verdict: str, activity_id: str) -> None:
        labels = self.data.setdefault("labels", {}).setdefault(verdict, [])
        if activity_id not in labels:
            labels.append(activity_id)
            del labels[:-MAX_LABELS]
        self.dirty = True

    def _push(self, which: str, t: float) -> None:
        times = self.data.setdefault(which, [])
        insort(times, t)
        if len(times) > MAX_TIMES:
            del times[:-MAX_TIMES]


def _seconds(obs: Observation) -> int:
    # Whole seconds keep the stored document small; detection never needs finer.
    return round(obs.epoch)
