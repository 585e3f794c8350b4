"""A deterministic, labelled traffic simulator over the synthetic world (``world.py``).

It feeds the demo (``tracking demo``), the tests and the detection benchmark. Every record is
in the import format (what ``tracking import`` reads) plus two label keys the importer ignores:

* ``label``: ``benign`` or the attack kind (``takeover``, ``takeover_vpn``, ``stuffing``,
  ``spraying``, ``bulk_export``, ``slow_exfil``, ``takeover_proxy``,
  ``stuffing_distributed``: a botnet of residential addresses in several countries, one or two
  tries each over two hours, about 30 % of the names not existing; ``bruteforce_rotating`` and
  ``spraying_rotating``: rotation inside one /24 or one provider, see ``attacks.py``;
  ``session_hijack``: a live session replayed from another network and browser, see
  ``sessions.py``);
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

Life is simulated per user and *local* day (each user lives in a time zone), attacks are
planned up front from the seed. Records are yielded sorted by timestamp with memory bounded by
about two days of traffic, so weeks of traffic for hundreds of users stream fine.

Session ids are raw (random) session keys, as a log shipper would see them; the importer
stores only their keyed hash.
"""

from __future__ import annotations

import heapq
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

from tracking.simulator import attacks, lookalikes, sessions
from tracking.simulator.world import CITIES, NETWORKS, Network, host, networks_of

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

FIRST_NAMES = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yusuf",
    "zoe",
    "amara",
    "bruno",
    "chen",
    "dmitri",
    "elena",
    "fatima",
    "gustav",
    "hana",
    "ines",
    "jonas",
    "kenji",
    "lucia",
    "marek",
    "nadia",
    "oscar",
    "priya",
    "quentin",
    "rosa",
    "sven",
    "tomas",
    "uma",
    "vera",
    "wei",
    "ximena",
    "yara",
    "zain",
    "aiko",
    "bea",
    "chidi",
)
LAST_NAMES = (
    "smith",
    "jones",
    "martin",
    "muller",
    "garcia",
    "schmidt",
    "dubois",
    "rossi",
    "tanaka",
    "okafor",
    "ivanova",
    "silva",
    "brown",
    "taylor",
    "wilson",
    "weber",
    "moreau",
    "lopez",
    "sato",
    "kowalski",
    "nguyen",
    "adeyemi",
    "costa",
    "fischer",
    "bernard",
    "clarke",
    "hughes",
)

DESKTOP_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
)
PHONE_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.113 Mobile Safari/537.36",
)
NEW_PHONE_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.53 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.52 Mobile Safari/537.36",
)
ATTACKER_UAS = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/109.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.109 Safari/537.36",
)
BOT_UAS = ("python-requests/2.31.0", "curl/8.4.0", "Go-http-client/1.1", "okhttp/4.12.0")

LANGUAGES = {
    "GB": "en-GB,en;q=0.9",
    "US": "en-US,en;q=0.9",
    "FR": "fr-FR,fr;q=0.9,en;q=0.6",
    "DE": "de-DE,de;q=0.9,en;q=0.7",
    "ES": "es-ES,es;q=0.9",
    "JP": "ja-JP,ja;q=0.9",
    "AU": "en-AU,en;q=0.9",
    "BR": "pt-BR,pt;q=0.9",
    "NG": "en-NG,en;q=0.9",
    "RU": "ru-RU,ru;q=0.9",
    "UA": "uk-UA,uk;q=0.9",
    "ID": "id-ID,id;q=0.9",
}
CURRENCY = {
    "GB": "GBP",
    "US": "USD",
    "JP": "JPY",
    "AU": "AUD",
    "BR": "BRL",
    "NG": "NGN",
    "RU": "RUB",
    "UA": "UAH",
    "ID": "IDR",
}
REPORTS = ("orders", "customers", "invoices", "inventory", "payouts", "usage")
API_PATHS = (
    "/api/v1/orders/",
    "/api/v1/profile/",
    "/api/v1/products/",
    "/api/v1/cart/",
    "/api/v1/notifications/",
)
ADMIN_PATHS = ("/admin/auth/user/", "/admin/tracking/activity/", "/admin/shop/order/")
# Places close enough to hop between within the hour (a commute, a visit).
NEARBY = {
    "london": "reading",
    "reading": "london",
    "berlin": "potsdam",
    "potsdam": "berlin",
    "new_york": "newark",
    "newark": "new_york",
}
# Where people fly to; the hotel networks of world.py are there.
FLIGHT_DESTINATIONS = (
    "madrid",
    "tokyo",
    "new_york",
    "london",
    "paris",
    "berlin",
    "sydney",
    "san_francisco",
)


@dataclass(frozen=True, slots=True)
class Place:
    network: Network
    ua: str
    detail: str = ""
    mobile: bool = False
    abroad: bool = False  # at the trip's destination
    ip: str = ""  # a fixed address everyone there shares (an office NAT)


@dataclass(slots=True)
class Trip:
    depart: int  # day index
    back: int  # day index of the return flight
    dest: str  # city key
    # Filled by the simulation (UTC): when each flight takes off and lands.
    out: tuple[datetime, datetime] | None = None
    ret: tuple[datetime, datetime] | None = None


@dataclass(slots=True)
class SimUser:
    """One simulated account and its habits (create matching Django users from these)."""

    index: int
    username: str
    email: str
    home: str  # city key
    home_net: Network
    office_net: Network | None
    mobile_net: Network | None
    desktop_ua: str
    phone_ua: str
    new_phone_ua: str | None = None
    new_phone_day: int | None = None
    night_owl: bool = False
    staff: bool = False
    trips: list[Trip] = field(default_factory=list)

    @property
    def country(self) -> str:
        return self.home_net.country

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(CITIES[self.home].time_zone if self.home else "UTC")


def _rng(seed: int, *parts: Any) -> Random:
    return Random("|".join(str(p) for p in (seed, *parts)))


def _uuid(rng: Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _session_key(rng: Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def distance_km(a: str, b: str) -> float:
    """Great-circle distance between two cities of the world."""
    ca, cb = CITIES[a], CITIES[b]
    p1, p2 = math.radians(ca.latitude), math.radians(cb.latitude)
    dp, dl = p2 - p1, math.radians(cb.longitude - ca.longitude)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def flight_hours(a: str, b: str) -> float:
    """A plausible gate-to-gate time: cruise at ~800 km/h plus taxi and climb."""
    return distance_km(a, b) / 800.0 + 0.75


def _residential(city: str) -> Network | None:
    nets = networks_of("residential", city)
    return nets[0] if nets else None


def _stay_network(city: str) -> tuple[Network, str]:
    hotels = networks_of("hotel", city)
    if hotels:
        return hotels[0], "hotel"
    return _residential(city) or NETWORKS[0], "travel"


def population(users: int = 50, days: int = 4, seed: int = 0) -> list[SimUser]:
    """The simulated accounts, deterministic in ``(users, days, seed)``."""
    home_cities = [k for k in CITIES if _residential(k) is not None]
    # Most users live where the service is popular (Europe/US), some elsewhere.
    weights = [6 if CITIES[k].country in ("GB", "DE", "FR", "US") else 1 for k in home_cities]
    country_only = {n.country: n for n in NETWORKS if n.city is None and n.kind == "residential"}
    result: list[SimUser] = []
    for i in range(users):
        rng = _rng(seed, "user", i)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{first}.{last}{i}" if i >= 3 else f"{first}.{last}"
        home = rng.choices(home_cities, weights)[0]
        home_net = _residential(home)
        assert home_net is not None
        country = home_net.country
        # Some broadband customers only geolocate to their country.
        if country in country_only and rng.random() < 0.15:
            home_net = country_only[country]
        office_city = home if home in ("london", "berlin", "new_york") else NEARBY.get(home)
        office_net = None
        if office_city in ("london", "berlin", "new_york") and rng.random() < 0.7:
            office_net = networks_of("corporate", office_city)[0]
        mobiles = [n for n in networks_of("mobile") if n.country == country]
        mobile_net = mobiles[0] if mobiles and rng.random() < 0.85 else None
        user = SimUser(
            index=i,
            username=username,
            email=f"{username}@example.com",
            home=home,
            home_net=home_net,
            office_net=office_net,
            mobile_net=mobile_net,
            desktop_ua=rng.choice(DESKTOP_UAS),
            phone_ua=rng.choice(PHONE_UAS),
            night_owl=rng.random() < 0.1,
            staff=i < max(1, users // 20),
        )
        if days >= 3 and rng.random() < 0.1:
            user.new_phone_day = rng.randrange(1, days)
            user.new_phone_ua = rng.choice(NEW_PHONE_UAS)
        day = 1
        while day < days - 1:
            if rng.random() < 0.04:
                dest = rng.choice([c for c in FLIGHT_DESTINATIONS if c != home])
                back = min(days - 1, day + rng.randint(1, 4))
                user.trips.append(Trip(day, back, dest))
                day = back + 2
            else:
                day += 1
        result.append(user)
    return result


class _Recorder:
    """Builds records and keeps them in a heap until they can be yielded in order."""

    def __init__(self, seed: int, window: tuple[datetime, datetime]) -> None:
        self.heap: list[tuple[datetime, int, dict]] = []
        self.counter = 0
        self.rng = _rng(seed, "ids", window[0].isoformat(), window[1].isoformat())
        self.window = window

    def add(self, ts: datetime, **record: Any) -> dict | None:
        if not (self.window[0] <= ts < self.window[1]):
            return None
        record = {"id": _uuid(self.rng), "timestamp": ts, **record}
        self.counter += 1
        heapq.heappush(self.heap, (ts, self.counter, record))
        return record

    def drain(self, before: datetime | None) -> Iterator[dict]:
        while self.heap and (before is None or self.heap[0][0] < before):
            ts, _, record = heapq.heappop(self.heap)
            record["timestamp"] = ts.isoformat()
            yield record


def _headers(country: str, *, api_token: bool = False) -> dict[str, str]:
    headers = {
        "Accept": "application/json" if api_token else "text/html,application/xhtml+xml",
        "Accept-Language": LANGUAGES.get(country, "en-US,en;q=0.8"),
        "Host": "shop.example.com",
    }
    if api_token:
        headers["Authorization"] = "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    return headers


def _duration(rng: Random, median: float) -> float:
    return round(rng.lognormvariate(math.log(median), 0.5), 2)


class _Simulation:
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
        self.rec = _Recorder(seed, (start, self.end))
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
            rng = _rng(seed, "forgot")
            for k in range(max(1, round(len(self.users) * max(1, days - self.gateway_day) / 300))):
                user = rng.choice(self.users)
                day = rng.randrange(self.gateway_day, max(self.gateway_day + 1, days))
                self.forgetful[(user.username, day)] = k
            self.moves = lookalikes.plan_moves(self.users, self.gateway_day, days, seed)
        for user in self.users:
            for k, trip in enumerate(user.trips):
                rng = _rng(seed, "trip", user.index, k)
                trip.out = self._flight(trip.depart, user.home, trip.dest, rng)
                trip.ret = self._flight(trip.back, trip.dest, user.home, rng)
        if attacks and self.users:
            self._plan_attacks()

    # -- planning -------------------------------------------------------------------
    def _plan_attacks(self) -> None:
        rng = _rng(self.seed, "attacks")
        user_days = len(self.users) * self.days
        first = min(1, self.days - 1)
        if self.attacks_from > self.start:
            # One more day: a local day starts up to 14 h before its UTC midnight, and an
            # attack must never leak into the clean period before ``attacks_from``.
            first = max(first, math.ceil((self.attacks_from - self.start) / timedelta(days=1)) + 1)
        days = list(range(first, self.days)) or [self.days - 1]
        self.hijacks = sessions.plan(self.users, days, self.seed)
        counts = {
            "takeover": max(2, round(user_days / 70)),
            "takeover_vpn": max(1, round(user_days / 140)),
            "stuffing": max(1, round(len(days) / 3)),
            "spraying": max(1, round(len(days) / 5)),
            "bulk_export": max(1, round(user_days / 200)),
            "slow_exfil": max(1, round(user_days / 200)),
            "takeover_proxy": max(1, round(user_days / 200)),
            "stuffing_distributed": max(1, round(len(days) / 3)),
            **{kind: max(1, round(len(days) / 3)) for kind in attacks.ROTATION_LABELS},
        }
        vpn_countries = {n.country for n in NETWORKS if n.kind in ("vpn", "hosting")}
        n = 0
        for kind, count in counts.items():
            for _ in range(count):
                n += 1
                day = rng.choice(days)
                if kind in (
                    "stuffing",
                    "spraying",
                    "stuffing_distributed",
                    *attacks.ROTATION_LABELS,
                ):
                    self.plan.setdefault(("*", day), []).append((kind, n))
                    continue
                pool = self.users
                if kind == "takeover_vpn":
                    pool = [u for u in self.users if u.country in vpn_countries] or pool
                victim = rng.choice(pool)
                self.plan.setdefault((victim.username, day), []).append((kind, n))

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
        near_net = _residential(near) if near else None
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
        stay_net, stay_detail = _stay_network(trip.dest)
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

    def _session(
        self,
        user: SimUser,
        t: datetime,
        place: Place,
        rng: Random,
        label: str = "benign",
        detail: str | None = None,
        script: Iterable[str] | None = None,
        gap: tuple[float, float] = (5, 240),
    ) -> list[dict]:
        """One browser session: a login, then a few actions. Returns the records added."""
        detail = place.detail if detail is None else detail
        key = _session_key(rng)
        ip = place.ip or (
            host(place.network, 10 + (user.index * 7 + rng.randrange(3)) % 240)
            if label == "benign"
            else host(place.network, rng.randrange(1, 250))
        )
        country = user.country
        added: list[dict] = []

        def emit(
            kind: str,
            endpoint: str,
            method: str,
            status: int,
            median: float,
            params: dict | None = None,
            api: bool = False,
            with_session: bool = True,
            detail_override: str | None = None,
        ) -> None:
            record = self.rec.add(
                t,
                type=kind,
                username=user.username,
                ip_address=ip,
                user_agent=place.ua,
                endpoint=endpoint,
                method=method,
                status=status,
                duration=_duration(rng, median),
                session_id=key if with_session else "",
                headers=_headers(country, api_token=api),
                params=params or {},
                label=label,
                label_detail=detail if detail_override is None else detail_override,
            )
            if record is not None:
                added.append(record)

        if label == "benign" and rng.random() < 0.06:
            emit(
                "AUTH",
                "/accounts/login/",
                "POST",
                rng.choice((401, 401, 401, 403)),
                120,
                {"username": user.username, "password": "typo-hunter2"},
                with_session=False,
                detail_override=f"{place.detail}:typo" if place.ip else "typo",
            )
            t += timedelta(seconds=rng.uniform(4, 25))
        emit(
            "AUTH",
            "/accounts/login/",
            "POST",
            200,
            140,
            {"username": user.username, "password": "hunter2-correct", "next": "/"},
        )
        actions = list(script) if script is not None else self._benign_actions(user, rng)
        for action in actions:
            t += timedelta(seconds=rng.uniform(*gap))
            if action == "api":
                path = rng.choice(API_PATHS)
                emit(
                    "API",
                    path,
                    "GET",
                    200 if rng.random() < 0.97 else 404,
                    45,
                    api=True,
                    params={"page": str(rng.randint(1, 5))},
                )
            elif action == "api_post":
                emit(
                    "API",
                    "/api/v1/orders/",
                    "POST",
                    201,
                    90,
                    api=True,
                    params={"product": str(rng.randint(1, 400)), "qty": str(rng.randint(1, 3))},
                )
            elif action == "payment":
                emit(
                    "PAYMENT",
                    "/payments/",
                    "POST",
                    200 if rng.random() < 0.95 else 402,
                    350,
                    {
                        "amount": f"{rng.uniform(5, 300):.2f}",
                        "currency": CURRENCY.get(country, "EUR"),
                    },
                )
            elif action == "big_payment":
                emit(
                    "PAYMENT",
                    "/payments/",
                    "POST",
                    200,
                    400,
                    {
                        "amount": f"{rng.uniform(900, 4900):.2f}",
                        "currency": "USD",
                        "payee": f"acct-{rng.randrange(10**8):08d}",
                    },
                )
            elif action == "export":
                emit(
                    "DATA",
                    f"/reports/{rng.choice(REPORTS)}/export/",
                    "GET",
                    200,
                    600,
                    {"format": rng.choice(("csv", "xlsx"))},
                )
            elif action == "bulk_export":
                emit(
                    "DATA",
                    f"/reports/{rng.choice(REPORTS)}/export/",
                    "GET",
                    200,
                    4000,
                    {"format": "csv", "rows": "all", "page": str(rng.randint(1, 400))},
                )
            elif action == "password":
                emit(
                    "ACCOUNT",
                    "/account/password/",
                    "POST",
                    200,
                    180,
                    {
                        "old_password": "hunter2-correct",
                        "new_password1": "n3w-pass-phrase",
                        "new_password2": "n3w-pass-phrase",
                    },
                )
            elif action == "email":
                emit(
                    "ACCOUNT",
                    "/account/email/",
                    "POST",
                    200,
                    150,
                    {"email": f"{user.username.split('.')[0]}.{rng.randrange(999)}@mail.test"},
                )
            elif action == "admin":
                emit("ADMIN", rng.choice(ADMIN_PATHS), "GET", 200, 220)
            elif action == "browse":
                emit("OTHER", rng.choice(("/", "/products/", "/cart/", "/help/")), "GET", 200, 60)
        if label == "benign" and rng.random() < 0.3:
            t += timedelta(seconds=rng.uniform(10, 300))
            emit("AUTH", "/accounts/logout/", "POST", 200, 40)
        return added

    def _benign_actions(self, user: SimUser, rng: Random) -> list[str]:
        choices = ["api", "api_post", "payment", "export", "password", "email", "browse", "admin"]
        weights = [40, 6, 12, 6 if user.office_net else 2, 1, 1, 25, 15 if user.staff else 0]
        n = max(1, round(rng.randint(1, 6) * self.scale))
        return rng.choices(choices, weights, k=n)

    # -- attacks --------------------------------------------------------------------
    def _attack_user(
        self, kind: str, n: int, victim: SimUser, day: int, owner: list[dict], rng: Random
    ) -> None:
        detail = f"{kind}-{n}"
        if kind == "bulk_export":
            # The owner's own desktop and home line, in the dead of night.
            t = self._local(day, victim.tz, rng.uniform(1.0, 4.0))
            place = Place(victim.home_net, victim.desktop_ua)
            self._session(
                victim,
                t,
                place,
                rng,
                kind,
                detail,
                script=["bulk_export"] * rng.randint(40, 90),
                gap=(3, 25),
            )
            return
        if kind == "slow_exfil":
            # The owner's own desktop and usual network, through one working day: about ten
            # times the usual exports, a few at a time (on a day the owner is at home).
            if any(trip.depart - 1 <= day <= trip.back + 1 for trip in victim.trips):
                return
            net = victim.office_net or victim.home_net
            place = Place(net, victim.desktop_ua)
            for hour in (9.2, 10.8, 13.5, 15.0, 16.4):
                self._session(
                    victim,
                    self._local(day, victim.tz, hour + rng.uniform(0, 0.5)),
                    place,
                    rng,
                    kind,
                    detail,
                    script=["export"] * rng.randint(4, 6),
                    gap=(60, 400),
                )
            return
        if kind == "takeover_proxy":
            # A residential proxy: an ordinary-looking ISP address, the attacker's browser.
            t = self._local(day, victim.tz, rng.uniform(9, 22))
            proxy = next(nw for nw in NETWORKS if nw.kind == "residential_proxy")
            place = Place(proxy, rng.choice(ATTACKER_UAS))
            script = ["browse", "password", "email", "big_payment", "export", "api"]
            self._session(
                victim, t, place, rng, kind, detail, script=script[: rng.randint(4, 6)], gap=(8, 90)
            )
            return
        if kind == "takeover":
            logins = [
                r
                for r in owner
                if r["type"] == "AUTH"
                and r["status"] == 200
                and r["endpoint"] == "/accounts/login/"
            ]
            if logins:
                t = rng.choice(logins)["timestamp"] + timedelta(minutes=rng.uniform(2, 25))
            else:
                t = self._local(day, victim.tz, rng.uniform(9, 20))
            far = [
                nw
                for nw in NETWORKS
                if nw.kind in ("hosting", "vpn")
                and nw.city
                and distance_km(nw.city, victim.home) > 2500
            ]
            network = rng.choice(far)
        else:  # takeover_vpn: an exit in the owner's own country
            t = self._local(day, victim.tz, rng.uniform(9, 22))
            network = rng.choice(
                [
                    nw
                    for nw in NETWORKS
                    if nw.kind in ("hosting", "vpn") and nw.country == victim.country
                ]
                or [nw for nw in NETWORKS if nw.kind == "vpn"]
            )
        place = Place(network, rng.choice(ATTACKER_UAS))
        script = ["browse", "password", "email", "big_payment", "export", "api"]
        self._session(
            victim, t, place, rng, kind, detail, script=script[: rng.randint(4, 6)], gap=(8, 90)
        )

    def _attack_global(self, kind: str, n: int, day: int, rng: Random) -> None:
        detail = f"{kind}-{n}"
        real = [u.username for u in self.users]
        fake = [
            f"{rng.choice(FIRST_NAMES)}{rng.choice(('', '.', '_'))}{rng.choice(LAST_NAMES)}"
            f"{rng.randrange(100)}"
            for _ in range(60)
        ] + ["admin", "test", "root", "info"]
        hosting = [nw for nw in NETWORKS if nw.kind in ("hosting", "vpn")]
        t = self._local(day, ZoneInfo("UTC"), rng.uniform(0, 22))
        if kind == "stuffing_distributed":
            self._botnet(detail, real, fake, t, rng)
            return
        if kind == "bruteforce_rotating":
            attacks.bruteforce_rotating(
                self.rec.add, detail, rng.choice(real), t, rng, ATTACKER_UAS
            )
            return
        if kind == "spraying_rotating":
            attacks.spraying_rotating(self.rec.add, detail, real, fake, t, rng, DESKTOP_UAS)
            return
        if kind == "stuffing":
            ip = host(rng.choice(hosting), rng.randrange(1, 250))
            ua = rng.choice(BOT_UAS + ATTACKER_UAS)
            names = rng.sample(real, min(len(real), rng.randint(15, 40))) + rng.sample(
                fake, rng.randint(30, 60)
            )
            rng.shuffle(names)
            for name in names:
                t += timedelta(seconds=rng.uniform(0.5, 6))
                status = 200 if name in real and rng.random() < 0.03 else 401
                self.rec.add(
                    t,
                    type="AUTH",
                    username=name,
                    ip_address=ip,
                    user_agent=ua,
                    endpoint="/accounts/login/",
                    method="POST",
                    status=status,
                    duration=_duration(rng, 110),
                    session_id="",
                    headers=_headers("US"),
                    params={"username": name, "password": "Summer2024!"},
                    label=kind,
                    label_detail=detail,
                )
            return
        # spraying: a handful of exits, one or two guesses per account, spread over hours
        ips = [host(rng.choice(hosting), rng.randrange(1, 250)) for _ in range(rng.randint(2, 4))]
        ua = rng.choice(ATTACKER_UAS)
        names = rng.sample(real, min(len(real), max(5, len(real) // 2))) + rng.sample(fake, 10)
        rng.shuffle(names)
        for password in ("Winter2025!", "Password1")[: rng.randint(1, 2)]:
            for name in names:
                t += timedelta(minutes=rng.uniform(2, 12))
                self.rec.add(
                    t,
                    type="AUTH",
                    username=name,
                    ip_address=rng.choice(ips),
                    user_agent=ua,
                    endpoint="/accounts/login/",
                    method="POST",
                    status=401,
                    duration=_duration(rng, 110),
                    session_id="",
                    headers=_headers("US"),
                    params={"username": name, "password": password},
                    label=kind,
                    label_detail=detail,
                )

    def _botnet(
        self, detail: str, real: list[str], fake: list[str], t: datetime, rng: Random
    ) -> None:
        """About 45 residential addresses in several countries, one or two tries each, spread
        over two hours; about 30 % of the names do not exist."""
        homes = [nw for nw in NETWORKS if nw.kind == "residential" and nw.city]
        bots = [
            (host(rng.choice(homes), rng.randrange(1, 250)), rng.choice(DESKTOP_UAS + PHONE_UAS))
            for _ in range(rng.randint(40, 50))
        ]
        attempts = []
        for ip, ua in bots:
            for _ in range(rng.choice((1, 1, 2))):
                name = rng.choice(fake) if rng.random() < 0.3 else rng.choice(real)
                attempts.append((t + timedelta(minutes=rng.uniform(0, 120)), ip, ua, name))
        for ts, ip, ua, name in sorted(attempts):
            self.rec.add(
                ts,
                type="AUTH",
                username=name,
                ip_address=ip,
                user_agent=ua,
                endpoint="/accounts/login/",
                method="POST",
                status=401,
                duration=_duration(rng, 110),
                session_id="",
                headers=_headers("US"),
                params={"username": name, "password": "Autumn2025!"},
                label="stuffing_distributed",
                label_detail=detail,
            )

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
                duration=_duration(rng, 120),
                session_id="",
                headers=_headers(user.country),
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
        self._session(user, t, Place(user.home_net, user.desktop_ua, detail), rng)

    # -- driver ---------------------------------------------------------------------
    def run(self) -> Iterator[dict]:
        for day in range(-1, self.days + 1):
            for user in self.users:
                rng = _rng(self.seed, "day", user.index, day)
                owner: list[dict] = []
                lookalikes.move_house(user, day, self.moves)
                for t, place in self._places(user, day, rng):
                    if not self._consistent(user, t, place):
                        continue
                    detail = lookalikes.moved_detail(
                        user, day, place.network, place.detail, self.moves
                    )
                    owner.extend(self._session(user, t, place, rng, detail=detail))
                for n in self.hijacks.get((user.username, day), ()):
                    sessions.hijack(
                        self.rec.add,
                        user,
                        owner,
                        n,
                        _rng(self.seed, "hijack", n),
                        DESKTOP_UAS + ATTACKER_UAS,
                        _headers(user.country),
                    )
                if (user.username, day) in self.forgetful:
                    self._forgot_password(user, day, _rng(self.seed, "forgot", user.index, day))
                for kind, n in self.plan.get((user.username, day), ()):
                    self._attack_user(kind, n, user, day, owner, _rng(self.seed, "attack", n))
            for kind, n in self.plan.get(("*", day), ()):
                self._attack_global(kind, n, day, _rng(self.seed, "attack", n))
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
