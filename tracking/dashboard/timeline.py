"""The user's recent history around one activity, with the travel between located events.

Distance and speed are computed here, on the server, so the page only displays them. Only
events with coordinates count as "located"; a leg joins each located event to the previous
located one, skipping events without a position in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q
from django.utils.translation import gettext as _

# The detectors' own distance, so the page shows exactly what impossible travel measured.
from detectors.geo import haversine_km
from tracking.dashboard.filters import user_q
from tracking.models import Activity


@dataclass
class Leg:
    """Travel from the previous located event to this one."""

    distance_km: float
    seconds: float
    # None when no time passed: any distance at all would be instantaneous.
    speed_kmh: float | None
    from_place: str
    # Sum of both positions' accuracy radii: a shorter distance may be no movement at all.
    radius_km: float = 0.0

    @property
    def within_accuracy(self) -> bool:
        return self.radius_km > 0 and self.distance_km <= self.radius_km

    @property
    def distance_text(self) -> str:
        value = f"{self.distance_km:,.0f}" if self.distance_km >= 10 else f"{self.distance_km:.1f}"
        return _("%(value)s km") % {"value": value}

    @property
    def gap_text(self) -> str:
        s = abs(self.seconds)
        if s < 90:
            return _("%(value)s s") % {"value": f"{s:.0f}"}
        if s < 90 * 60:
            return _("%(value)s min") % {"value": f"{s / 60:.0f}"}
        if s < 48 * 3600:
            return _("%(value)s h") % {"value": f"{s / 3600:.1f}"}
        return _("%(value)s days") % {"value": f"{s / 86400:.1f}"}

    @property
    def speed_text(self) -> str:
        if self.speed_kmh is None:
            return _("instant") if self.distance_km > 0 else _("%(value)s km/h") % {"value": "0"}
        return _("%(value)s km/h") % {"value": f"{self.speed_kmh:,.0f}"}


@dataclass
class Entry:
    activity: Activity
    is_current: bool
    leg: Leg | None


def place(activity: Activity) -> str:
    parts = [p for p in (activity.city, activity.country) if p]
    return ", ".join(parts) if parts else _("unknown place")


def located(activity: Activity) -> bool:
    return activity.latitude is not None and activity.longitude is not None


def legs(activities: list[Activity]) -> list[Leg | None]:
    """One leg (or None) per activity, which must be in time order."""
    out: list[Leg | None] = []
    previous: Activity | None = None
    for act in activities:
        if not located(act):
            out.append(None)
            continue
        if previous is None:
            out.append(None)
        else:
            assert previous.latitude is not None and previous.longitude is not None
            assert act.latitude is not None and act.longitude is not None
            km = haversine_km(previous.latitude, previous.longitude, act.latitude, act.longitude)
            seconds = (act.timestamp - previous.timestamp).total_seconds()
            speed = km / (seconds / 3600) if seconds > 0 else None
            radius = float((previous.accuracy_radius or 0) + (act.accuracy_radius or 0))
            out.append(
                Leg(
                    distance_km=km,
                    seconds=seconds,
                    speed_kmh=speed,
                    from_place=place(previous),
                    radius_km=radius,
                )
            )
        previous = act
    return out


def around(activity: Activity, size: int) -> list[Entry]:
    """Up to ``size`` activities of the same user before and after ``activity``, oldest first."""
    who = user_q(activity)
    extra = 0
    if who is None:
        chain = [activity]
    else:
        base = Activity.objects.filter(who).defer("headers", "params")
        ts, pk = activity.timestamp, activity.pk
        before = list(
            base.filter(Q(timestamp__lt=ts) | Q(timestamp=ts, id__lt=pk)).order_by(
                "-timestamp", "-id"
            )[: size + 1]
        )
        # One older event than shown, so the first shown event still gets its leg.
        extra = max(0, len(before) - size)
        after = list(
            base.filter(Q(timestamp__gt=ts) | Q(timestamp=ts, id__gt=pk)).order_by(
                "timestamp", "id"
            )[:size]
        )
        chain = [*reversed(before), activity, *after]
    entries = [
        Entry(activity=act, is_current=act.pk == activity.pk, leg=leg)
        for act, leg in zip(chain, legs(chain), strict=True)
    ]
    return entries[extra:]
