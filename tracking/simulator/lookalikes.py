"""Benign look-alikes of attacks that change where people come from (hooks of ``traffic.py``).

* ``gateway``: from the test period's first day, the London and New York offices reach the site
  through a cloud security gateway in their own country (a hosting network to GeoIP; the New
  York egress is geolocated to Chicago, 1,100 km from the users' homes), with the users' usual
  desktops. It should be learned as an organisation network within its first day (or be named
  in ``TRACKING_TRUSTED_NETWORKS``), and its location is never the users'.
* ``office_nat``: the Berlin office reaches the site through one NAT address: everyone there
  shares it, so a few mistyped passwords among many logins fail from one address for several
  accounts (the shape of spraying from one address).
* ``moved_house``: in the test period a few users without an office move to another city of
  their country and get a new broadband provider (a new AS), keeping their devices; their
  events from the new home carry the detail (a move is no trip: no impossible travel).

Only the world is imported here (the simulation imports this module, not the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Any

from tracking.simulator.world import NETWORKS, Network, host

GATEWAY_OFFICES: tuple[str, ...] = ("london", "new_york")
NAT_OFFICE = "berlin"


def office_network(office: Network, day: int, gateway_day: int | None) -> tuple[Network, str, str]:
    """(network, detail, fixed address or "") of a day at ``office``."""
    if gateway_day is not None and day >= gateway_day and office.city in GATEWAY_OFFICES:
        gateways = [n for n in NETWORKS if n.kind == "gateway" and n.country == office.country]
        if gateways:
            return gateways[0], "gateway", ""
    if office.city == NAT_OFFICE:
        return office, "office_nat", host(office, 1)
    return office, "", ""


@dataclass(frozen=True, slots=True)
class Move:
    day: int
    city: str
    network: Network


def _new_lines(home_net: Network) -> list[Network]:
    """Broadband in another city of the same country from another provider (another AS)."""
    return [
        n
        for n in NETWORKS
        if n.kind == "residential"
        and n.city
        and n.country == home_net.country
        and n.city != home_net.city
        and n.asn != home_net.asn
    ]


def plan_moves(users: list[Any], first_day: int, days: int, seed: int) -> dict[str, Move]:
    """Who moves house on which day: about 2 % of the users (at least one), each to a new line
    no other mover takes."""
    rng = Random(f"{seed}|moves")
    # Nobody moves while travelling (the trips' flights are planned from the old home).
    movers = [
        u
        for u in users
        if u.office_net is None
        and u.home_net.city
        and _new_lines(u.home_net)
        and not any(trip.back >= first_day - 1 for trip in u.trips)
    ]
    if not movers or first_day >= days:
        return {}
    plan: dict[str, Move] = {}
    taken: set[Network] = set()
    wanted = max(1, round(len(users) / 50))
    for user in rng.sample(movers, len(movers)):
        # One mover per new line: several users arriving on one network in a week is a
        # team moving (``gateway``), not people moving house.
        lines = [n for n in _new_lines(user.home_net) if n not in taken]
        if not lines:
            continue
        line = rng.choice(lines)
        assert line.city is not None
        taken.add(line)
        # At least two days in the new home before the period ends.
        day = rng.randrange(first_day, max(first_day + 1, days - 2))
        plan[user.username] = Move(day, line.city, line)
        if len(plan) == wanted:
            break
    return plan


def move_house(user: Any, day: int, moves: dict[str, Move]) -> None:
    """On the day of their move the user lives in the new city, on the new line."""
    move = moves.get(user.username)
    if move is not None and day == move.day:
        user.home, user.home_net = move.city, move.network


def moved_detail(user: Any, day: int, network: Network, detail: str, moves: dict[str, Move]) -> str:
    """``moved_house`` for the events of a mover at their new home."""
    move = moves.get(user.username)
    if move is not None and day >= move.day and network == move.network:
        return "moved_house"
    return detail
