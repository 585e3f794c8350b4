"""Context values derived from a user's profile *before* an event is learned.

Rules read them as ``ctx.<name>`` fields and the outlier detector turns them into its feature
vector. They are computed once per event by the glue and passed in ``Context.features``.
"""

from __future__ import annotations

from typing import Any

from detectors.geo import haversine_km
from detectors.observation import Observation
from detectors.profile import UserProfile, ua_key

DAY = 86400.0
# How long a value stays "known" for the ctx.new_* fields (rules); detectors have their own windows.
NOVELTY_WINDOW_DAYS = 60


def local_hour(obs: Observation, profile: UserProfile | None) -> int:
    """Hour of day at the user's usual place (from its longitude), else at the event's place."""
    lon = None
    if profile is not None and profile.location:
        lon = profile.location.get("lon")
    if lon is None:
        lon = obs.longitude
    offset = round(lon / 15.0) if lon is not None else 0
    return (obs.timestamp.hour + offset) % 24


def event_local_hour(obs: Observation, profile: UserProfile | None) -> int:
    """Hour of day where the event happened (its own longitude), else at the user's place."""
    if obs.longitude is not None and obs.city:
        return (obs.timestamp.hour + round(obs.longitude / 15.0)) % 24
    return local_hour(obs, profile)


def hour_rarity(obs: Observation, profile: UserProfile | None) -> float:
    """1 - how usual this UTC hour (and its neighbours) is for the user; 0.5 with no history."""
    if profile is None or profile.events < 5:
        return 0.5
    hours = profile.hours
    h = obs.timestamp.hour
    near = hours[h] + 0.5 * (hours[(h - 1) % 24] + hours[(h + 1) % 24])
    peak = max(hours) or 1
    return max(0.0, 1.0 - near / peak)


def unknown_name(profile: UserProfile | None) -> bool:
    """A name that never signed in: no profile (failures create none). A claimed name that
    matches no account is stored masked (a keyed hash, the same for the same name), so it
    never has one either, and distinct masked names stay distinct."""
    return profile is None or profile.events == 0


def stranger(event: Observation, profile: UserProfile | None) -> bool:
    """A failure that is not the owner mistyping: a name that does not exist, or an account
    failing from an AS or a browser it never signed in with (an organisation network, named
    or learned, is the owner's own too). Ordinary typos and forgotten passwords happen at home
    on the usual browser, so these are rare on a normal day and most of a botnet's tries."""
    if unknown_name(profile):
        return True
    if event.trusted_network:
        return False
    assert profile is not None
    return not (
        event.asn is not None
        and profile.known("asn", str(event.asn), event.epoch)
        and bool(event.user_agent)
        and profile.known("ua", ua_key(event.user_agent), event.epoch)
    )


def context_features(obs: Observation, profile: UserProfile | None) -> dict[str, Any]:
    now = obs.epoch
    window = NOVELTY_WINDOW_DAYS * DAY
    out: dict[str, Any] = {
        "known_user": not unknown_name(profile),
        "user_events": profile.events if profile is not None else 0,
        "local_hour": local_hour(obs, profile),
        "event_local_hour": event_local_hour(obs, profile),
        "hour_rarity": hour_rarity(obs, profile),
        "new_asn": False,
        "new_country": False,
        "new_city": False,
        "new_device": False,
        "distance_km": 0.0,
        "failures_1h": 0,
        "requests_10m": 0,
        "minutes_since_novel_login": None,
        "network_kind": obs.network_kind,
        "trusted_network": obs.trusted_network,
        # Rules count failures from outside the accounts' own networks and browsers
        # (password_spraying): an office NAT's typos are the owners' own.
        "stranger": stranger(obs, profile),
    }
    if profile is None:
        return out
    # An organisation network (trusted or learned) is never "new"; an anonymizing exit's
    # place is not the user's, so no distance is measured to it.
    learned = profile.events > 0 and not obs.trusted_network
    if learned:
        out["new_asn"] = obs.asn is not None and not profile.known("asn", str(obs.asn), now, window)
        out["new_country"] = bool(obs.country) and not profile.known(
            "country", obs.country, now, window
        )
        out["new_city"] = bool(obs.city) and not profile.known(
            "city", f"{obs.country}/{obs.city}", now, window
        )
        out["new_device"] = bool(obs.device_key) and not profile.known(
            "device", obs.device_key, now, window
        )
    loc = profile.location
    if loc and obs.latitude is not None and obs.longitude is not None and not obs.network_kind:
        out["distance_km"] = haversine_km(loc["lat"], loc["lon"], obs.latitude, obs.longitude)
    out["failures_1h"] = profile.recent("fail", now, 3600)
    out["requests_10m"] = profile.recent("req", now, 600)
    novel = profile.novel_login
    if novel is not None and novel <= now:
        out["minutes_since_novel_login"] = (now - novel) / 60.0
    return out
