"""The attacks of the traffic simulator, planned up front from the seed.

A mixin of the simulation (``traffic.py``): ``_plan_attacks`` spreads the attacks over the
days after ``attacks_from`` (how many of each kind grows with users x days), then the day loop
calls ``_attack_user`` for the attacks on one victim and ``_attack_global`` for the campaigns
against the whole site:

* ``takeover`` (a hosting/VPN exit over 2,500 km from home, soon after the owner's login),
  ``takeover_vpn`` (an exit in the owner's own country), ``takeover_proxy`` (a residential
  proxy): the attacker's browser, a password and e-mail change, a large payment;
* ``bulk_export`` (the owner's own desktop and home line, at night) and ``slow_exfil`` (about
  ten times the usual exports, a few at a time through one working day);
* ``stuffing`` (one hosting address, many names), ``spraying`` (a few exits, one or two
  passwords per account over hours), ``stuffing_distributed`` (a botnet of residential
  addresses in several countries, one or two tries each over two hours, about 30 % of the
  names not existing), ``bruteforce_rotating`` and ``spraying_rotating`` (``attacks.py``);
* ``session_hijack`` is planned here and replayed by ``sessions.py``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from random import Random
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tracking.simulator import attacks, sessions
from tracking.simulator.people import (
    DESKTOP_UAS,
    FIRST_NAMES,
    LAST_NAMES,
    PHONE_UAS,
    Place,
    SimUser,
    distance_km,
    rng_for,
)
from tracking.simulator.records import Recorder, duration, headers, session
from tracking.simulator.world import NETWORKS, host

ATTACKER_UAS = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/109.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.109 Safari/537.36",
)
BOT_UAS = ("python-requests/2.31.0", "curl/8.4.0", "Go-http-client/1.1", "okhttp/4.12.0")


class Campaigns:
    """Attack planning and execution; ``traffic._Simulation`` provides the state below."""

    users: list[SimUser]
    days: int
    start: datetime
    seed: int
    attacks_from: datetime
    rec: Recorder
    # (username or "*", day) -> [(kind, attack number)]
    plan: dict[tuple[str, int], list[tuple[str, int]]]
    hijacks: dict[tuple[str, int], list[int]]

    if TYPE_CHECKING:

        def _local(self, day: int, tz: ZoneInfo, hour: float) -> datetime: ...

    def _plan_attacks(self) -> None:
        rng = rng_for(self.seed, "attacks")
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

    def _attack_user(
        self, kind: str, n: int, victim: SimUser, day: int, owner: list[dict], rng: Random
    ) -> None:
        detail = f"{kind}-{n}"
        if kind == "bulk_export":
            # The owner's own desktop and home line, in the dead of night.
            t = self._local(day, victim.tz, rng.uniform(1.0, 4.0))
            place = Place(victim.home_net, victim.desktop_ua)
            session(
                self.rec.add,
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
                session(
                    self.rec.add,
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
            network = next(nw for nw in NETWORKS if nw.kind == "residential_proxy")
        elif kind == "takeover":
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
        session(
            self.rec.add,
            victim,
            t,
            place,
            rng,
            kind,
            detail,
            script=script[: rng.randint(4, 6)],
            gap=(8, 90),
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
                    duration=duration(rng, 110),
                    session_id="",
                    headers=headers("US"),
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
                    duration=duration(rng, 110),
                    session_id="",
                    headers=headers("US"),
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
                duration=duration(rng, 110),
                session_id="",
                headers=headers("US"),
                params={"username": name, "password": "Autumn2025!"},
                label="stuffing_distributed",
                label_detail=detail,
            )
