"""Session hijack: a live session (the same session id) used from another network *and* another
browser than the one it started on.

A stolen session cookie needs no login, so the detectors that judge logins and novel places
(impossible travel, ASN change, risk score) may see nothing more than "a new network" — and a
replay from an ordinary ISP in the user's own country does not reach the flag threshold on that
alone. What a replay cannot fake is continuity: a session is one browser on one connection, and
people who move (Wi-Fi to the carrier) keep their browser. So the first event of a session
records where it started (network: the address block and AS number; browser: the user-agent
hash and the device family) in the user's profile; a later event of that session is judged:

- network (the /24 or /48 address block) *and* browser (user-agent and device family) both
  changed: ``hijack_score`` (0.9: flags);
- only the browser changed (same block): ``browser_score`` (0.4, low: a phone's "desktop
  site" switch, a proxy rewriting headers);
- only the network changed: nothing (roaming, a VPN switched on).

Only the ``max_sessions`` (8) most recent sessions of a user are remembered, and a session not
seen for ``max_idle_hours`` (24) is forgotten (dropped when the user's next session starts), so
a profile stays small and scoring is a few dictionary lookups. The start of a session is recorded for every event with a session id
(``note``), flagged or not; a flagged event never changes what the session started as, so an
attacker's later requests keep being compared to the owner's start. Events without a session
id (failed logins, API tokens) are not judged. The session id is the stored keyed hash, cut to
``KEY_CHARS`` characters (never the raw key).
"""

from __future__ import annotations

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile, ip_prefix, ua_key

HOUR = 3600
KEY_CHARS = 16


def _network(obs: Observation) -> tuple[str, str]:
    return ip_prefix(obs.ip_address), "" if obs.asn is None else str(obs.asn)


class SessionHijack(Detector):
    name = "session_hijack"
    tag = "session_hijack"

    def __init__(
        self,
        hijack_score: float = 0.9,
        browser_score: float = 0.4,
        max_sessions: int = 8,
        max_idle_hours: float = 24,
    ) -> None:
        self.hijack_score = hijack_score
        self.browser_score = browser_score
        self.max_sessions = max_sessions
        self.max_idle_hours = max_idle_hours

    def validate(self) -> None:
        check_number("hijack_score", self.hijack_score, low=0, high=1)
        check_number("browser_score", self.browser_score, low=0, high=1)
        check_number("max_sessions", self.max_sessions, low=1, high=256)
        check_number("max_idle_hours", self.max_idle_hours, low=0)

    @staticmethod
    def _key(event: Observation) -> str:
        return event.session_id[:KEY_CHARS] if event.session_id else ""

    def _start(self, profile: UserProfile, key: str, now: float) -> list | None:
        """The remembered start of session ``key`` (None when unknown or idle too long)."""
        sessions = profile.data.get("sess")
        start = sessions.get(key) if sessions else None
        if start is None or now - start[5] > self.max_idle_hours * HOUR:
            return None
        return start

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        key = self._key(event)
        if profile is None or not key:
            return []
        start = self._start(profile, key, event.epoch)
        if start is None:
            return []
        block, asn, ua, device = start[0], start[1], start[2], start[3]
        now_block, now_asn = _network(event)
        # An address unknown on either side is no evidence of a move.
        network_changed = bool(block and now_block) and now_block != block
        browser_changed = ua_key(event.user_agent) != ua and event.device_key != device
        if not browser_changed:
            return []
        minutes = max(0, round((event.epoch - start[4]) / 60))
        then = f"AS{asn}" if asn else block or "an unknown network"
        there = f"AS{now_asn}" if now_asn else now_block or "an unknown network"
        if network_changed:
            score, severity = self.hijack_score, "high"
            reason = (
                f"Session started {minutes} min ago on {then} with {device.replace('|', ' / ')}"
                f" is now used from {there} with {event.device_key.replace('|', ' / ')}"
            )
        else:
            score, severity = self.browser_score, "low"
            reason = (
                f"Session started {minutes} min ago with {device.replace('|', ' / ')} is now "
                f"used with {event.device_key.replace('|', ' / ')} (same network)"
            )
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=score,
                severity=severity,
                reason=reason,
                evidence={
                    "started_minutes_ago": minutes,
                    "network_changed": network_changed,
                    "start_asn": asn,
                    "asn": now_asn,
                    "start_device": device,
                    "device": event.device_key,
                },
            )
        ]

    def note(self, event: Observation, profile: UserProfile | None, context: Context) -> None:
        key = self._key(event)
        if profile is None or not key:
            return
        now = event.epoch
        sessions = profile.data.setdefault("sess", {})
        start = self._start(profile, key, now)
        if start is not None:
            start[5] = max(start[5], round(now))  # still alive; what it started as stays
        else:
            # A new session: forget the idle ones, then the idlest while too many (a handful
            # of entries: a cheap scan, once per session).
            idle = now - self.max_idle_hours * HOUR
            for old in [k for k, v in sessions.items() if v[5] < idle]:
                del sessions[old]
            while len(sessions) >= self.max_sessions:
                del sessions[min(sessions, key=lambda k: sessions[k][5])]
            block, asn = _network(event)
            t = round(now)
            sessions[key] = [block, asn, ua_key(event.user_agent), event.device_key, t, t]
        profile.dirty = True
