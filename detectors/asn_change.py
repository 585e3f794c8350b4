"""ASN change: the user arrives from a network they have not used within the baseline window.

A new network alone is common (new home ISP, a café); the score grows with what else is new at
the same time (device, country) and with the kind of network: hosting/VPN exits score higher,
mobile carriers (whose customers hop between networks) lower. Users still in their learning
period (too few events or days) are not judged.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile

DAY = 86400.0

# A few well-known cloud/hosting ASNs; extend with the ``hosting_asns`` parameter.
DEFAULT_HOSTING_ASNS: tuple[int, ...] = (
    14061,  # DigitalOcean
    16276,  # OVH
    16509,  # Amazon
    14618,  # Amazon
    20473,  # Vultr (Choopa)
    24940,  # Hetzner
    63949,  # Linode / Akamai
    396982,  # Google Cloud
    8075,  # Microsoft
    9009,  # M247
    60068,  # Datacamp / CDN77
    212238,  # Datacamp
    51167,  # Contabo
    202425,  # IP Volume
)


def network_kind(
    asn: int | None,
    isp: str,
    hosting: frozenset,
    mobile: frozenset,
    hosting_kw: tuple,
    mobile_kw: tuple,
) -> str:
    if asn is not None and asn in hosting:
        return "hosting"
    if asn is not None and asn in mobile:
        return "mobile"
    name = (isp or "").lower()
    if name and any(k in name for k in hosting_kw):
        return "hosting"
    if name and any(k in name for k in mobile_kw):
        return "mobile"
    return "other"


class AsnChange(Detector):
    name = "asn_change"
    tag = "new_asn"

    def __init__(
        self,
        baseline_days: float = 45,
        min_events: int = 5,
        min_days: float = 2,
        base_score: float = 0.35,
        new_country_weight: float = 0.25,
        new_device_weight: float = 0.2,
        hosting_weight: float = 0.35,
        mobile_weight: float = -0.15,
        hosting_asns: list[int] | tuple[int, ...] = DEFAULT_HOSTING_ASNS,
        mobile_asns: list[int] | tuple[int, ...] = (),
        hosting_keywords: list[str] | tuple[str, ...] = (
            "hosting",
            "vpn",
            "cloud",
            "datacenter",
            "data center",
            "server",
            "colo",
            "proxy",
        ),
        mobile_keywords: list[str] | tuple[str, ...] = (
            "mobile",
            "mobil",
            "wireless",
            "cellular",
            "lte",
        ),
        min_score: float = 0.0,
    ) -> None:
        self.baseline_days = baseline_days
        self.min_events = min_events
        self.min_days = min_days
        self.base_score = base_score
        self.new_country_weight = new_country_weight
        self.new_device_weight = new_device_weight
        self.hosting_weight = hosting_weight
        self.mobile_weight = mobile_weight
        self.hosting_asns = hosting_asns
        self.mobile_asns = mobile_asns
        self.hosting_keywords = hosting_keywords
        self.mobile_keywords = mobile_keywords
        self.min_score = min_score

    def validate(self) -> None:
        check_number("baseline_days", self.baseline_days, low=0)
        check_number("min_events", self.min_events, low=0)
        check_number("min_days", self.min_days, low=0)
        for name in (
            "base_score",
            "new_country_weight",
            "new_device_weight",
            "hosting_weight",
            "min_score",
        ):
            check_number(name, getattr(self, name), low=0, high=1)
        check_number("mobile_weight", self.mobile_weight, low=-1, high=1)
        for name in ("hosting_asns", "mobile_asns"):
            for asn in getattr(self, name):
                if isinstance(asn, bool) or not isinstance(asn, int):
                    raise ValueError(f"{name}: {asn!r} is not an AS number")

    def fit(self, X: Any = None, y: Any = None) -> AsnChange:
        self.hosting_ = frozenset(int(a) for a in self.hosting_asns)
        self.mobile_ = frozenset(int(a) for a in self.mobile_asns)
        self.hosting_kw_ = tuple(k.lower() for k in self.hosting_keywords)
        self.mobile_kw_ = tuple(k.lower() for k in self.mobile_keywords)
        return self

    def extend_networks(self, hosting_asns: tuple[int, ...], mobile_asns: tuple[int, ...]) -> None:
        """The site's lists are added to this detector's own (and the lookup sets rebuilt)."""
        self.set_params(
            hosting_asns=tuple(self.hosting_asns) + tuple(hosting_asns),
            mobile_asns=tuple(self.mobile_asns) + tuple(mobile_asns),
        )
        self.fit()

    def kind(self, obs: Observation) -> str:
        if not hasattr(self, "hosting_"):
            self.fit()
        return network_kind(
            obs.asn, obs.isp, self.hosting_, self.mobile_, self.hosting_kw_, self.mobile_kw_
        )

    def learning(self, profile: UserProfile, now: float) -> bool:
        if profile.events < self.min_events:
            return True
        first = profile.first_seen
        return first is None or now - first < self.min_days * DAY

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if profile is None or event.asn is None:
            return []
        now = context.now.timestamp()
        if self.learning(profile, now):
            return []
        window = self.baseline_days * DAY
        if profile.known("asn", str(event.asn), now, window):
            return []
        new_country = bool(event.country) and not profile.known(
            "country", event.country, now, window
        )
        new_device = bool(event.device_key) and not profile.known(
            "device", event.device_key, now, window
        )
        kind = self.kind(event)
        score = self.base_score
        parts = [f"AS{event.asn}" + (f" ({event.isp})" if event.isp else "")]
        if new_country:
            score += self.new_country_weight
            parts.append(f"new country {event.country}")
        if new_device:
            score += self.new_device_weight
            parts.append(f"new device {event.device_key.replace('|', ' / ')}")
        if kind == "hosting":
            score += self.hosting_weight
            parts.append("hosting/VPN network")
        elif kind == "mobile":
            score += self.mobile_weight
            parts.append("mobile carrier")
        score = min(1.0, max(0.0, score))
        if score < self.min_score:
            return []
        if score >= 0.85:
            severity = "high"
        elif score >= 0.55:
            severity = "medium"
        else:
            severity = "low"
        days = int(self.baseline_days)
        reason = f"Network not used in {days} days: " + ", ".join(parts)
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=score,
                severity=severity,
                reason=reason,
                evidence={
                    "asn": event.asn,
                    "isp": event.isp,
                    "network_kind": kind,
                    "new_country": new_country,
                    "new_device": new_device,
                    "known_asns": sorted(profile.values("asn"))[:20],
                    "baseline_days": self.baseline_days,
                },
            )
        ]
