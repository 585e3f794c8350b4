"""Small builders for detector tests: observations at world places, trained profiles."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from detectors.base import Context, Observation
from detectors.features import context_features
from detectors.profile import UserProfile
from tracking.simulator.world import CITIES

UTC = dt_timezone.utc

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DESKTOP = ("Other", "Windows", "Chrome")
PHONE = ("iPhone", "iOS", "Mobile Safari")


def obs(
    city: str | None = "london",
    *,
    at: datetime = T0,
    minutes: float = 0,
    asn: int | None = 64600,
    isp: str = "Thames Broadband",
    radius: int | None = 10,
    country: str | None = None,
    latlon: tuple[float, float] | None = None,
    device: tuple[str, str, str] = DESKTOP,
    type: str = "AUTH",
    status: int = 200,
    ip: str = "81.2.69.10",
    username: str = "alice",
    ua: str = "Mozilla/5.0 desktop",
    **extra,
) -> Observation:
    c = CITIES[city] if city else None
    lat, lon = latlon if latlon else ((c.latitude, c.longitude) if c else (None, None))
    return Observation(
        timestamp=at + timedelta(minutes=minutes),
        type=type,
        id=extra.pop("id", f"ev-{minutes}-{city}"),
        user_key=f"n:{username}" if username else None,
        username=username,
        ip_address=ip,
        isp=isp,
        asn=asn,
        country=country if country is not None else (c.country if c else ""),
        city=c.name if c else "",
        latitude=lat,
        longitude=lon,
        accuracy_radius=radius,
        device=device[0],
        os=device[1],
        browser=device[2],
        user_agent=ua,
        status=status,
        method=extra.pop("method", "POST"),
        endpoint=extra.pop("endpoint", "/accounts/login/"),
        **extra,
    )


def ctx(o: Observation, profile: UserProfile | None = None, population=None) -> Context:
    return Context(now=o.timestamp, population=population, features=context_features(o, profile))


def trained_profile(events: int = 30, days: float = 20, city: str = "london", **kw) -> UserProfile:
    """A user who logged in ``events`` times from ``city`` over ``days`` days before T0."""
    p = UserProfile(key="n:alice")
    for i in range(events):
        o = obs(city, at=T0 - timedelta(days=days) + timedelta(days=days * i / events), **kw)
        p.note(o)
        p.learn(o)
        if o.has_position and o.city:
            p.set_location(o)
    return p
