"""Session hijack: a live session replayed by an attacker (planned by ``campaigns.py``,
played out by ``traffic.py``).

A few minutes to an hour after the owner signed in (before they log out), the attacker uses the owner's session (the
same session id: a stolen cookie) from another network and another browser, without logging
in: browsing, an export, a change of e-mail address, a payment. The network is an ordinary ISP
of the owner's own country in half the cases (another city's broadband: what a residential
proxy near the victim looks like), else a residential proxy or a hosting/VPN exit. Records
are labelled ``session_hijack`` with the detail ``session_hijack-<n>``.

Only the world is imported here (the simulation imports this module, not the other way round).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from random import Random
from typing import Any

from tracking.simulator.world import NETWORKS, Network, host

LABEL = "session_hijack"
# (type, endpoint, method, status, median duration ms, params)
ACTIONS: dict[str, tuple[str, str, str, int, float]] = {
    "browse": ("OTHER", "/", "GET", 200, 60),
    "api": ("API", "/api/v1/orders/", "GET", 200, 45),
    "export": ("DATA", "/reports/customers/export/", "GET", 200, 600),
    "email": ("ACCOUNT", "/account/email/", "POST", 200, 150),
    "payment": ("PAYMENT", "/payments/", "POST", 200, 400),
}


def plan(users: list[Any], days: list[int], seed: int) -> dict[tuple[str, int], list[int]]:
    """(username, day) → hijack numbers: about one per 50 user-days of the attack period."""
    if not users or not days:
        return {}
    rng = Random(f"{seed}|hijack")
    result: dict[tuple[str, int], list[int]] = {}
    for n in range(max(2, round(len(users) * len(days) / 50))):
        victim = rng.choice(users)
        result.setdefault((victim.username, rng.choice(days)), []).append(n)
    return result


def _network(victim: Any, rng: Random) -> Network:
    local = [
        nw
        for nw in NETWORKS
        if nw.kind == "residential"
        and nw.city
        and nw.country == victim.country
        and nw.asn != victim.home_net.asn
        and nw != victim.home_net
    ]
    roll = rng.random()
    if local and roll < 0.5:
        return rng.choice(local)
    if roll < 0.75:
        return next(nw for nw in NETWORKS if nw.kind == "residential_proxy")
    return rng.choice([nw for nw in NETWORKS if nw.kind in ("hosting", "vpn")])


def hijack(
    add: Callable[..., dict | None],
    victim: Any,
    owner: list[dict],
    n: int,
    rng: Random,
    user_agents: tuple[str, ...],
    headers: dict[str, str],
) -> int:
    """Replay one of ``owner``'s sessions of the day; returns the records added (0 when the
    owner had no session that day)."""
    logins = [
        r
        for r in owner
        if r["endpoint"] == "/accounts/login/"
        and r["status"] == 200
        and r["session_id"]
        and r["label"] == "benign"
    ]
    if not logins:
        return 0
    login = rng.choice(logins)
    t: datetime = login["timestamp"] + timedelta(minutes=rng.uniform(3, 60))
    # A session the owner logged out of is gone: the replay comes before that.
    logout = [
        r["timestamp"]
        for r in owner
        if r["session_id"] == login["session_id"] and r["endpoint"] == "/accounts/logout/"
    ]
    if logout:
        t = min(t, max(login["timestamp"] + timedelta(minutes=1), logout[0] - timedelta(minutes=1)))
    network = _network(victim, rng)
    ip = host(network, rng.randrange(1, 250))
    ua = rng.choice([u for u in user_agents if u != login["user_agent"]])
    script = ["browse", "api", "export", "email", "payment", "export"][: rng.randint(3, 6)]
    added = 0
    for action in script:
        kind, endpoint, method, status, median = ACTIONS[action]
        record = add(
            t,
            type=kind,
            username=victim.username,
            ip_address=ip,
            user_agent=ua,
            endpoint=endpoint,
            method=method,
            status=status,
            duration=round(rng.lognormvariate(math.log(median), 0.5), 2),
            session_id=login["session_id"],
            headers=headers,
            params={"format": "csv"} if action == "export" else {},
            label=LABEL,
            label_detail=f"{LABEL}-{n}",
        )
        added += record is not None
        t += timedelta(seconds=rng.uniform(8, 90))
    return added
