"""A deterministic, labelled traffic simulator over the synthetic world (``world.py``).

It feeds the demo (``tracking demo``), the tests and the detection benchmark. Every record is
in the import format (what ``tracking import`` reads) plus two label keys the importer ignores:

* ``label``: ``benign`` or the attack kind (``takeover``, ``takeover_vpn``, ``stuffing``,
  ``spraying``, ``bulk_export``, ``slow_exfil``, ``takeover_proxy``,
  ``stuffing_distributed``, ``bruteforce_rotating``, ``spraying_rotating``,
  ``session_hijack``; see ``campaigns.py``);
* ``label_detail``: for benign records the hard case they exercise (``flight:london->tokyo``,
  ``nearby:berlin->potsdam``, ``hotel``, ``inflight``, ``mobile_carrier``, ``mobile_jump``,
  ``country_only``, ``new_device``, ``night_owl``, ``typo``, ``gateway``,
  ``forgot_password``, ``office_nat`` (``office_nat:typo``), ``moved_house`` (see
  ``tracking.simulator.lookalikes``), or ``""`` for ordinary life);
  for attack records the attack session id (``takeover-3``), so recall can be computed per
  attack session rather than per line.

With ``attacks_from`` after the start (a clean training period, then a test period), the test
period also holds benign look-alikes: from its first day the London and New York offices
reach the site through a cloud security gateway (a hosting network in the same country,
``gateway``), a few users move house (``moved_house``), and a few users forget their password
(several failed logins, a reset, a login: ``forgot_password``). The Berlin office always
shares one NAT address (``office_nat``).

The people are ``people.py``'s, what their requests look like is ``records.py``'s. Life is
simulated here per user and *local* day (each user lives in a time zone); attacks are planned
up front from the seed. Records are yielded sorted by timestamp with memory bounded by about
two days of traffic, so weeks of traffic for hundreds of users stream fine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from random import Random
from zoneinfo import ZoneInfo

from tracking.simulator import attacks, lookalikes, sessions
from tracking.simulator.campaigns import ATTACKER_UAS, Campaigns
from tracking.simulator.people import (
    DESKTOP_UAS,
    FLIGHT_DESTINATIONS,
    NEARBY,
    NEW_PHONE_UAS,
    Place,
    SimUser,
    Trip,
    distance_km,
    flight_hours,
    population,
    residential,
    rng_for,
    stay_network,
)
from tracking.simulator.records import Recorder, duration, headers, session
from tracking.simulator.world import CITIES, NETWORKS, host

# The simulator's interface, people.py's names included: its callers import them from here.
__all__ = [
    "ATTACK_LABELS",
    "DEFAULT_START",
    "FLIGHT_DESTINATIONS",
    "LABEL_KEYS",
    "NEW_PHONE_UAS",
    "Place",
    "SimUser",
    "Trip",
    "distance_km",
    "flight_hours",
    "population",
    "simulate",
    "strip_labels",
    "write_ndjson",
]

UTC = dt_timezone.utc

ATTACK_LABELS = (
    "takeover",
    "takeover_vpn",
    "stuffing",
    "spraying",
    "bulk_export",
    "slow_exfil",
    "takeover_proxy",
    "stuffing_distributed",
    *attacks.ROTATION_LABELS,
    "session_hijack",
)
LABEL_KEYS = ("label", "label_detail")
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


class _Simulation(Campaigns):
    def __init__(
        self,
        users: int,
        days: int,
        start: datetime,
        seed: int,
        attacks: bool,
        scale: float,
        attacks_from: datetime | None,
    ) -> None:
        self.days, self.start, self.seed, self.scale = days, start, seed, scale
        self.end = start + timedelta(days=days)
        self.users = population(users, days, seed)
        self.rec = Recorder(seed, (start, self.end))
        self.plan: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.attacks_from = attacks_from or start
        # The London and New York offices move behind a security gateway when a test period
        # starts (``lookalikes.office_network``).
        self.gateway_day: int | None = None
        self.forgetful: dict[tuple[str, int], int] = {}
        self.moves: dict[str, lookalikes.Move] = {}
        self.hijacks: dict[tuple[str, int], list[int]] = {}
        if attacks_from is not None and attacks_from > start:
            self.gateway_day = math.ceil((attacks_from - start) / timedelta(days=1)) + 1
            rng = rng_for(seed, "forgot")
            for k in range(max(1, round(len(self.users) * max(1, days - self.gateway_day) / 300))):
                user = rng.choice(self.users)
                day = rng.randrange(self.gateway_day, max(self.gateway_day + 1, days))
                self.forgetful[(user.username, day)] = k
            self.moves = lookalikes.plan_moves(self.users, self.gateway_day, days, seed)
        for user in self.users:
            for k, trip in enumerate(user.trips):
                rng = rng_for(seed, "trip", user.index, k)
                trip.out = self._flight(trip.depart, user.home, trip.dest, rng)
                trip.ret = self._flight(trip.back, trip.dest, user.home, rng)
        if attacks and self.users:
            self._plan_attacks()

    # -- planning -------------------------------------------------------------------
    def _flight(self, day: int, origin: str, target: str, rng: Random) -> tuple[datetime, datetime]:
        takeoff = self._local(day, ZoneInfo(CITIES[origin].time_zone), rng.uniform(10, 13))
        # "Landing" is the first moment the traveller can log in: gate time plus getting out.
        hours = flight_hours(origin, target) + rng.uniform(0.5, 2.0)
        return takeoff, takeoff + timedelta(hours=hours)

    @staticmethod
    def _consistent(user: SimUser, t: datetime, place: Place) -> bool:
        """Whether ``place`` is where the user can be at ``t`` given their flights."""
        if place.detail == "inflight" or place.detail.startswith("flight:"):
            return True
        for trip in user.trips:
            assert trip.out is not None and trip.ret is not None
            away = trip.out[0] <= t < trip.ret[1]
            at_dest = trip.out[1] < t < trip.ret[0]
            if place.abroad:
                if at_dest:
                    return True
            elif away:
                return False
        return not place.abroad

    # -- benign life ----------------------------------------------------------------
    def _local(self, day: int, tz: ZoneInfo, hour: float) -> datetime:
        d = self.start.date() + timedelta(days=day)
        base = datetime.combine(d, time(0), tzinfo=tz)
        return (base + timedelta(hours=hour)).astimezone(UTC)

    def _places(self, user: SimUser, day: int, rng: Random) -> list[tuple[datetime, Place]]:
        """Where and when the user starts sessions on their local ``day``."""
        phone_ua = user.phone_ua
        new_phone = user.new_phone_day is not None and day >= user.new_phone_day
        if new_phone:
            phone_ua = user.new_phone_ua or phone_ua
        phone_detail = "new_device" if new_phone and day == user.new_phone_day else ""
        home_detail = "country_only" if user.home_net.city is None else ""
        tz = user.tz
        out: list[tuple[datetime, Place]] = []

        trip = next((t for t in user.trips if t.depart <= day <= t.back), None)
        if trip is not None:
            return self._travel_places(user, day, trip, rng, phone_ua)

        weekday = (self.start.date() + timedelta(days=day)).weekday() < 5
        n = max(1, round(rng.choice((1, 2, 2, 3)) * self.scale))
        if user.office_net and weekday:
            if rng.random() < 0.4:
                out.append(
                    (
                        self._local(day, tz, rng.uniform(7, 8.3)),
                        Place(user.home_net, user.desktop_ua, home_detail),
                    )
                )
            net, office_detail, nat = lookalikes.office_network(
                user.office_net, day, self.gateway_day
            )
            office = Place(net, user.desktop_ua, office_detail, ip=nat)
            for _ in range(max(1, round(rng.choice((1, 2, 3)) * self.scale))):
                out.append((self._local(day, tz, rng.uniform(9, 17.5)), office))
            n = max(0, n - 2)
        for _ in range(n):
            if user.night_owl:
                hour, detail = rng.uniform(21.5, 27.0), "night_owl"
            else:
                hour, detail = (
                    rng.choice((rng.uniform(7, 9), rng.uniform(12, 14), rng.uniform(18, 22.5))),
                    home_detail,
                )
            desktop = rng.random() < 0.7
            ua = user.desktop_ua if desktop else phone_ua
            out.append(
                (
                    self._local(day, tz, hour),
                    Place(user.home_net, ua, detail or ("" if desktop else phone_detail)),
                )
            )
        # Phone on the mobile carrier: lands in the capital with a big radius.
        if user.mobile_net is not None:
            for _ in range(rng.choice((0, 1, 1, 2))):
                out.append(
                    (
                        self._local(day, tz, rng.uniform(8, 21)),
                        Place(
                            user.mobile_net, phone_ua, phone_detail or "mobile_carrier", mobile=True
                        ),
                    )
                )
        # Country-only transit addresses happen to everyone in those countries now and then.
        transit = [
            n
            for n in NETWORKS
            if n.city is None and n.kind == "residential" and n.country == user.country
        ]
        if transit and rng.random() < 0.08:
            out.append(
                (
                    self._local(day, tz, rng.uniform(9, 21)),
                    Place(transit[0], user.desktop_ua, "country_only"),
                )
            )
        near = NEARBY.get(user.home)
        near_net = residential(near) if near else None
        if near_net is not None and rng.random() < 0.12:
            out.append(
                (
                    self._local(day, tz, rng.uniform(13, 18)),
                    Place(
                        near_net,
                        user.desktop_ua if rng.random() < 0.5 else phone_ua,
                        f"nearby:{user.home}->{near}",
                    ),
                )
            )
        out.sort(key=lambda x: x[0])
        # A switch to the carrier soon after broadband is the classic false "jump".
        for i in range(1, len(out)):
            (prev_t, prev), (t, place) = out[i - 1], out[i]
            if (
                place.mobile != prev.mobile
                and t - prev_t < timedelta(hours=1)
                and place.detail in ("", "mobile_carrier")
            ):
                out[i] = (t, Place(place.network, place.ua, "mobile_jump", place.mobile))
        return out

    def _travel_places(
        self, user: SimUser, day: int, trip: Trip, rng: Random, phone_ua: str
    ) -> list[tuple[datetime, Place]]:
        assert trip.out is not None and trip.ret is not None
        stay_net, stay_detail = stay_network(trip.dest)
        dest_tz = ZoneInfo(CITIES[trip.dest].time_zone)
        out: list[tuple[datetime, Place]] = []
        if day in (trip.depart, trip.back):
            outbound = day == trip.depart
            origin, target = (user.home, trip.dest) if outbound else (trip.dest, user.home)
            takeoff, landing = trip.out if outbound else trip.ret
            origin_tz = ZoneInfo(CITIES[origin].time_zone)
            if outbound:
                before = Place(user.home_net, rng.choice((user.desktop_ua, phone_ua)))
            else:
                before = Place(
                    stay_net, rng.choice((user.desktop_ua, phone_ua)), stay_detail, abroad=True
                )
            out.append((self._local(day, origin_tz, rng.uniform(6, 9)), before))
            hours = (landing - takeoff).total_seconds() / 3600
            if hours > 3 and rng.random() < 0.35:
                sat = next(n for n in NETWORKS if n.kind == "satellite")
                out.append(
                    (
                        takeoff + timedelta(hours=hours * rng.uniform(0.3, 0.7)),
                        Place(sat, phone_ua, "inflight"),
                    )
                )
            landed = landing
            arrive_net = stay_net if outbound else user.home_net
            out.append(
                (landed, Place(arrive_net, phone_ua, f"flight:{origin}->{target}", abroad=outbound))
            )
            if outbound and rng.random() < 0.6:
                out.append(
                    (
                        landed + timedelta(hours=rng.uniform(2, 5)),
                        Place(stay_net, user.desktop_ua, stay_detail, abroad=True),
                    )
                )
        else:
            for _ in range(rng.choice((1, 2, 3))):
                out.append(
                    (
                        self._local(day, dest_tz, rng.uniform(8, 22)),
                        Place(
                            stay_net,
                            rng.choice((user.desktop_ua, phone_ua)),
                            stay_detail,
                            abroad=True,
                        ),
                    )
                )
        out.sort(key=lambda x: x[0])
        return out

    def _forgot_password(self, user: SimUser, day: int, rng: Random) -> None:
        """Several failed logins from home, a password reset, then a normal session."""
        t = self._local(day, user.tz, rng.uniform(8, 21))
        ip = host(user.home_net, 10 + (user.index * 7) % 240)
        detail = "forgot_password"

        def add(kind: str, endpoint: str, status: int, params: dict) -> None:
            self.rec.add(
                t,
                type=kind,
                username=user.username,
                ip_address=ip,
                user_agent=user.desktop_ua,
                endpoint=endpoint,
                method="POST",
                status=status,
                duration=duration(rng, 120),
                session_id="",
                headers=headers(user.country),
                params=params,
                label="benign",
                label_detail=detail,
            )

        for guess in range(rng.randint(3, 6)):
            add(
                "AUTH",
                "/accounts/login/",
                401,
                {"username": user.username, "password": f"old{guess}"},
            )
            t += timedelta(seconds=rng.uniform(8, 40))
        add("ACCOUNT", "/accounts/password/reset/", 200, {"email": user.email})
        t += timedelta(minutes=rng.uniform(2, 10))
        add("ACCOUNT", "/accounts/reset/done/", 200, {"new_password1": "new-pass-phrase"})
        t += timedelta(seconds=rng.uniform(10, 60))
        session(
            self.rec.add,
            user,
            t,
            Place(user.home_net, user.desktop_ua, detail),
            rng,
            scale=self.scale,
        )

    # -- driver ---------------------------------------------------------------------
    def run(self) -> Iterator[dict]:
        for day in range(-1, self.days + 1):
            for user in self.users:
                rng = rng_for(self.seed, "day", user.index, day)
                owner: list[dict] = []
                lookalikes.move_house(user, day, self.moves)
                for t, place in self._places(user, day, rng):
                    if not self._consistent(user, t, place):
                        continue
                    detail = lookalikes.moved_detail(
                        user, day, place.network, place.detail, self.moves
                    )
                    owner.extend(
                        session(self.rec.add, user, t, place, rng, detail=detail, scale=self.scale)
                    )
                for n in self.hijacks.get((user.username, day), ()):
                    sessions.hijack(
                        self.rec.add,
                        user,
                        owner,
                        n,
                        rng_for(self.seed, "hijack", n),
                        DESKTOP_UAS + ATTACKER_UAS,
                        headers(user.country),
                    )
                if (user.username, day) in self.forgetful:
                    self._forgot_password(user, day, rng_for(self.seed, "forgot", user.index, day))
                for kind, n in self.plan.get((user.username, day), ()):
                    self._attack_user(kind, n, user, day, owner, rng_for(self.seed, "attack", n))
            for kind, n in self.plan.get(("*", day), ()):
                self._attack_global(kind, n, day, rng_for(self.seed, "attack", n))
            # Later local days start at most 14 h before their UTC midnight.
            horizon = datetime.combine(
                self.start.date() + timedelta(days=day + 1), time(0), tzinfo=UTC
            ) - timedelta(hours=14)
            yield from self.rec.drain(horizon)
        yield from self.rec.drain(None)


def simulate(
    users: int = 50,
    days: int = 4,
    start: datetime | None = None,
    seed: int = 0,
    attacks: bool = True,
    scale: float = 1.0,
    attacks_from: datetime | None = None,
) -> Iterator[dict]:
    """Yield labelled import-format records in timestamp order over ``[start, start+days)``.

    ``scale`` multiplies how busy people are (sessions and actions); ``attacks_from`` keeps
    the time before it clean (e.g. training weeks before a test week). Deterministic in all
    arguments.
    """
    if users < 0 or days < 1:
        raise ValueError("users must be >= 0 and days >= 1")
    start = start or DEFAULT_START
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    return _Simulation(users, days, start, seed, attacks, scale, attacks_from).run()


def strip_labels(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in LABEL_KEYS}


def write_ndjson(records: Iterable[dict], path: str | Path, include_labels: bool = True) -> int:
    """Write records as NDJSON (one object per line); returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            if not include_labels:
                record = strip_labels(record)
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
