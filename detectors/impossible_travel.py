"""Impossible travel: the user moved faster than a plane could have taken them.

The distance between the user's previous located event and this one is the haversine distance
*minus both accuracy radii* (GeoIP places a mobile carrier's customers in the capital with a radius
of hundreds of km: the user may be anywhere in that circle). Records without a city, or with a
radius above ``max_accuracy_radius_km``, are country-level guesses and never treated as a position.
Allow-listed networks (corporate VPN ranges, satellite and in-flight relays), organisation
networks (``Observation.trusted_network``) and anonymizing or hosting exits
(``Observation.network_kind``: their place is the exit's, never the user's; the
``anonymous_network`` detector judges them) are ignored entirely, as origin and as destination.
A return to a place *and* network the user has established (``exempt_known_places``) is not
judged either: the way out may simply not have been observed.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.base import SEVERITIES, Context, Detector, Finding, Observation, check_number
from detectors.geo import haversine_km, in_networks, parse_network
from detectors.profile import UserProfile


def _fmt_duration(seconds: float) -> str:
    minutes = abs(seconds) / 60.0
    if minutes < 1:
        return f"{abs(seconds):.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _place(city: str, country: str) -> str:
    return city or country or "unknown place"


class ImpossibleTravel(Detector):
    name = "impossible_travel"
    tag = "impossible_travel"
    locates = True

    def __init__(
        self,
        max_speed_kmh: float = 1000.0,
        min_distance_km: float = 500.0,
        max_accuracy_radius_km: float = 500.0,
        allow_networks: list[str] | tuple[str, ...] = (),
        allow_asns: list[int] | tuple[int, ...] = (),
        relay_keywords: list[str] | tuple[str, ...] = (
            "satellite",
            "in-flight",
            "inflight",
            "aero",
        ),
        severity: str = "high",
        flag: bool = True,
        exempt_known_places: bool = True,
        known_min_count: int = 3,
    ) -> None:
        self.max_speed_kmh = max_speed_kmh
        self.min_distance_km = min_distance_km
        self.max_accuracy_radius_km = max_accuracy_radius_km
        self.allow_networks = allow_networks
        self.allow_asns = allow_asns
        self.relay_keywords = relay_keywords
        self.severity = severity
        self.flag = flag
        self.exempt_known_places = exempt_known_places
        self.known_min_count = known_min_count

    def validate(self) -> None:
        check_number("max_speed_kmh", self.max_speed_kmh, low=1)
        check_number("min_distance_km", self.min_distance_km, low=0)
        check_number("max_accuracy_radius_km", self.max_accuracy_radius_km, low=0)
        for cidr in self.allow_networks:
            try:
                parse_network(cidr)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"allow_networks: {cidr!r} is not a network ({exc})") from None
        for asn in self.allow_asns:
            if isinstance(asn, bool) or not isinstance(asn, int):
                raise ValueError(f"allow_asns: {asn!r} is not an AS number")
        check_number("known_min_count", self.known_min_count, low=1)
        if not self.severity or self.severity not in SEVERITIES:
            raise ValueError(f"severity: unknown severity {self.severity!r}")

    def fit(self, X: Any = None, y: Any = None) -> ImpossibleTravel:
        self.networks_ = tuple(parse_network(c) for c in self.allow_networks)
        self.asns_ = frozenset(int(a) for a in self.allow_asns)
        self.keywords_ = tuple(k.lower() for k in self.relay_keywords)
        self.relay_isps_: dict[str, bool] = {}
        return self

    def _ready(self) -> None:
        if not hasattr(self, "networks_"):
            self.fit()

    def allow_listed(self, obs: Observation) -> bool:
        self._ready()
        if obs.network_kind or obs.trusted_network:
            return True
        if obs.asn is not None and obs.asn in self.asns_:
            return True
        if self.keywords_ and obs.isp:
            verdict = self.relay_isps_.get(obs.isp)
            if verdict is None:
                if len(self.relay_isps_) > 4096:
                    self.relay_isps_.clear()
                isp = obs.isp.lower()
                verdict = self.relay_isps_[obs.isp] = any(k in isp for k in self.keywords_)
            if verdict:
                return True
        return bool(self.networks_) and in_networks(obs.ip_address, self.networks_)

    def locatable(self, obs: Observation) -> bool:
        """A city-level position we may reason about."""
        if not obs.has_position or not obs.city:
            return False
        radius = obs.accuracy_radius or 0
        return radius <= self.max_accuracy_radius_km and not self.allow_listed(obs)

    def established(self, event: Observation, profile: UserProfile) -> bool:
        """Whether the event is at one of the user's established places *on* an established
        network (home broadband, the office): a return there is not evidence of travel, even if
        the trip out was never seen. A VPN exit in the same city has another ASN and is judged."""
        if event.asn is None or not event.city:
            return False
        city = profile.count("city", f"{event.country}/{event.city}")
        asn = profile.count("asn", str(event.asn))
        return city >= self.known_min_count and asn >= self.known_min_count

    def update(self, event: Observation, profile: UserProfile, context: Context) -> None:
        """Remember this event as the user's last located event (called for teaching events).
        A position is trusted only from an event no detector or rule found suspicious."""
        if not context.suspicious and self.locatable(event):
            profile.set_location(event)

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if profile is None or not self.locatable(event):
            return []
        prev = profile.location
        if not prev:
            return []  # first located event of this user
        if (prev.get("r") or 0) > self.max_accuracy_radius_km:
            return []
        assert event.latitude is not None and event.longitude is not None  # locatable()
        distance = haversine_km(prev["lat"], prev["lon"], event.latitude, event.longitude)
        margin = (prev.get("r") or 0) + (event.accuracy_radius or 0)
        effective = max(0.0, distance - margin)
        if effective <= 0 or effective < self.min_distance_km:
            return []
        seconds = abs(context.now.timestamp() - prev["ts"])
        speed = math.inf if seconds == 0 else effective / (seconds / 3600.0)
        if speed <= self.max_speed_kmh:
            return []
        if self.exempt_known_places and self.established(event, profile):
            return []
        origin = _place(prev.get("city", ""), prev.get("country", ""))
        target = _place(event.city, event.country)
        speed_txt = "instantly" if math.isinf(speed) else f"= {speed:,.0f} km/h"
        reason = f"{origin} → {target}, {distance:,.0f} km in {_fmt_duration(seconds)} {speed_txt}"
        if margin:
            reason += f" (≥ {effective:,.0f} km after ±{margin:,.0f} km accuracy)"
        ratio = 1.0 if math.isinf(speed) else 1.0 - self.max_speed_kmh / speed
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=0.75 + 0.25 * ratio,
                severity=self.severity,
                reason=reason,
                evidence={
                    "from": {
                        "city": prev.get("city", ""),
                        "country": prev.get("country", ""),
                        "lat": prev["lat"],
                        "lon": prev["lon"],
                        "accuracy_radius": prev.get("r") or 0,
                        "asn": prev.get("asn"),
                        "ts": prev["ts"],
                    },
                    "to": {
                        "city": event.city,
                        "country": event.country,
                        "lat": event.latitude,
                        "lon": event.longitude,
                        "accuracy_radius": event.accuracy_radius or 0,
                        "asn": event.asn,
                    },
                    "distance_km": round(distance, 1),
                    "effective_distance_km": round(effective, 1),
                    "elapsed_s": round(seconds, 1),
                    "speed_kmh": None if math.isinf(speed) else round(speed, 1),
                    "max_speed_kmh": self.max_speed_kmh,
                },
                flag=self.flag,
            )
        ]
