"""The simulated population: who the accounts are, where they live, what they carry.

Each account has a home city (most in Europe and the US, where the service is popular), a home
broadband network (sometimes one that geolocates only to its country), an office network for
many near London, Berlin and New York, a mobile carrier for most, a desktop browser and a phone,
and sometimes a new phone part-way through or a few trips abroad (flights to the hotel networks
of ``world.py``). Everything is deterministic in ``(users, days, seed)``.

Only the world is imported here; the traffic simulator (``traffic.py``) turns these people
into records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

from tracking.simulator.world import CITIES, NETWORKS, Network, networks_of

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
    """Where a session comes from: a network and the browser used there."""

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


def rng_for(seed: int, *parts: Any) -> Random:
    """A generator of its own for each part of the simulation, so parts never shift each other."""
    return Random("|".join(str(p) for p in (seed, *parts)))


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


def residential(city: str) -> Network | None:
    nets = networks_of("residential", city)
    return nets[0] if nets else None


def stay_network(city: str) -> tuple[Network, str]:
    hotels = networks_of("hotel", city)
    if hotels:
        return hotels[0], "hotel"
    return residential(city) or NETWORKS[0], "travel"


def population(users: int = 50, days: int = 4, seed: int = 0) -> list[SimUser]:
    """The simulated accounts, deterministic in ``(users, days, seed)``."""
    home_cities = [k for k in CITIES if residential(k) is not None]
    # Most users live where the service is popular (Europe/US), some elsewhere.
    weights = [6 if CITIES[k].country in ("GB", "DE", "FR", "US") else 1 for k in home_cities]
    country_only = {n.country: n for n in NETWORKS if n.city is None and n.kind == "residential"}
    result: list[SimUser] = []
    for i in range(users):
        rng = rng_for(seed, "user", i)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{first}.{last}{i}" if i >= 3 else f"{first}.{last}"
        home = rng.choices(home_cities, weights)[0]
        home_net = residential(home)
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
