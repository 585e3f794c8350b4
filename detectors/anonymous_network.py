"""Anonymous network: the event comes through a VPN, hosting, proxy or Tor exit.

Enrichment marks such addresses with ``Observation.network_kind`` (MaxMind's Anonymous-IP
database, a Tor exit list). The place GeoIP gives for them is the exit's, not the user's, so
impossible travel ignores them; this detector judges them instead. A user who habitually comes
through the same exit network (``known_min_count`` teaching events on that AS within
``baseline_days``) gets a low,
informational score (a first use scores enough to flag, so only a reviewer's dismissal or a
lower threshold teaches it); a network new to the user scores ``new_network_score`` (enough to flag with
the default threshold), more for Tor and for a device the user never used. An address of an
organisation network (``TRACKING_TRUSTED_NETWORKS``, or learned) is not judged.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile

DAY = 86400.0

NETWORK_KINDS: tuple[str, ...] = ("vpn", "hosting", "public_proxy", "residential_proxy", "tor")
KIND_LABELS: dict[str, str] = {
    "vpn": "VPN exit",
    "hosting": "hosting provider",
    "public_proxy": "public proxy",
    "residential_proxy": "residential proxy",
    "tor": "Tor exit node",
}


class AnonymousNetwork(Detector):
    name = "anonymous_network"
    tag = "anonymous_network"

    def __init__(
        self,
        kinds: list[str] | tuple[str, ...] = NETWORK_KINDS,
        new_network_score: float = 0.7,
        known_network_score: float = 0.2,
        unknown_user_score: float = 0.3,
        tor_weight: float = 0.15,
        new_device_weight: float = 0.1,
        known_min_count: int = 1,
        baseline_days: float = 45,
    ) -> None:
        self.kinds = kinds
        self.new_network_score = new_network_score
        self.known_network_score = known_network_score
        self.unknown_user_score = unknown_user_score
        self.tor_weight = tor_weight
        self.new_device_weight = new_device_weight
        self.known_min_count = known_min_count
        self.baseline_days = baseline_days

    def validate(self) -> None:
        unknown = [k for k in self.kinds if k not in NETWORK_KINDS]
        if unknown:
            raise ValueError(f"kinds: unknown kind(s) {unknown}; choose from {list(NETWORK_KINDS)}")
        for name in (
            "new_network_score",
            "known_network_score",
            "unknown_user_score",
            "tor_weight",
            "new_device_weight",
        ):
            check_number(name, getattr(self, name), low=0, high=1)
        check_number("known_min_count", self.known_min_count, low=1)
        check_number("baseline_days", self.baseline_days, low=0)

    def fit(self, X: Any = None, y: Any = None) -> AnonymousNetwork:
        self.kinds_ = frozenset(self.kinds)
        return self

    def established(self, event: Observation, profile: UserProfile, now: float) -> bool:
        """The user habitually comes through this exit network (their own VPN)."""
        if event.asn is None:
            return False
        key = str(event.asn)
        window = self.baseline_days * DAY
        return (
            profile.known("asn", key, now, window)
            and profile.count("asn", key) >= self.known_min_count
        )

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if not hasattr(self, "kinds_"):
            self.fit()
        kind = event.network_kind
        if not kind or kind not in self.kinds_ or event.trusted_network:
            return []
        label = KIND_LABELS.get(kind, kind)
        network = f"AS{event.asn}" + (f" {event.isp}" if event.isp else "") if event.asn else ""
        exit_place = ", ".join(p for p in (event.city, event.country) if p) or "unknown place"
        evidence: dict[str, Any] = {
            "network_kind": kind,
            "asn": event.asn,
            "isp": event.isp,
            "exit_place": exit_place,
        }
        if profile is None or profile.events == 0:
            score, severity, verdict = self.unknown_user_score, "low", "no history"
        elif self.established(event, profile, context.now.timestamp()):
            score, severity, verdict = self.known_network_score, "low", "the user's usual exit"
        else:
            score = self.new_network_score
            verdict = "new to the user"
            if kind == "tor":
                score += self.tor_weight
            new_device = bool(event.device_key) and not profile.known(
                "device", event.device_key, context.now.timestamp(), self.baseline_days * DAY
            )
            if new_device:
                score += self.new_device_weight
                verdict += ", new device"
            evidence["new_device"] = new_device
            score = min(1.0, score)
            severity = "high" if score >= 0.85 else "medium"
        evidence["verdict"] = verdict
        reason = (
            f"Through a {label}{' (' + network + ')' if network else ''}, {verdict}; "
            f"its location ({exit_place}) is the exit's, not the user's"
        )
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=score,
                severity=severity,
                reason=reason,
                evidence=evidence,
            )
        ]
