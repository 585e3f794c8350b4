"""Attacks that rotate their address inside one network (cases of ``campaigns.py``).

- ``bruteforce_rotating``: one account guessed slowly (a try every 3–6 minutes, under the
  per-account burst rule) from a different address of one residential /24 each time;
- ``spraying_rotating``: many accounts, one or two tries each, from addresses spread over the
  /24 blocks of one residential provider (one AS), each address with its own browser string,
  about 30 % of the names not existing.

Both come from ordinary access networks (no anonymizer the Anonymous-IP database would name),
so only counting per network can see them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from random import Random
from typing import Any

from tracking.simulator.world import NETWORKS, host

ROTATION_LABELS = ("bruteforce_rotating", "spraying_rotating")


def _attempt(
    add: Callable[..., Any],
    t: datetime,
    *,
    name: str,
    ip: str,
    ua: str,
    guess: str,
    label: str,
    detail: str,
    rng: Random,
) -> None:
    add(
        t,
        type="AUTH",
        username=name,
        ip_address=ip,
        user_agent=ua,
        endpoint="/accounts/login/",
        method="POST",
        status=401,
        duration=round(rng.lognormvariate(4.7, 0.5), 2),
        session_id="",
        headers={
            "Accept": "text/html,application/xhtml+xml",
            "Accept-Language": "en-US,en;q=0.9",
            "Host": "shop.example.com",
        },
        params={"username": name, "password": guess},
        label=label,
        label_detail=detail,
    )


def bruteforce_rotating(
    add: Callable[..., Any],
    detail: str,
    victim: str,
    t: datetime,
    rng: Random,
    user_agents: tuple[str, ...],
) -> None:
    """20–30 guesses at one account, one every 3–6 minutes, each from another address of one
    residential /24."""
    block = rng.choice([n for n in NETWORKS if n.kind == "residential" and n.city])
    ua = rng.choice(user_agents)
    for k in range(rng.randint(20, 30)):
        t += timedelta(minutes=rng.uniform(3, 6))
        _attempt(
            add,
            t,
            name=victim,
            ip=host(block, rng.randrange(1, 250)),
            ua=ua,
            guess=f"Spring{2000 + k}!",
            label="bruteforce_rotating",
            detail=detail,
            rng=rng,
        )


def spraying_rotating(
    add: Callable[..., Any],
    detail: str,
    real: list[str],
    fake: list[str],
    t: datetime,
    rng: Random,
    user_agents: tuple[str, ...],
) -> None:
    """40–60 accounts (about 30 % not existing), one or two tries each over about two hours,
    from addresses spread over every /24 of one residential provider."""
    by_asn: dict[int, list] = {}
    for n in NETWORKS:
        if n.kind == "residential" and n.city:
            by_asn.setdefault(n.asn, []).append(n)
    blocks = by_asn[rng.choice(sorted(a for a, nets in by_asn.items() if len(nets) > 1))]
    names = [rng.choice(fake) if rng.random() < 0.3 else rng.choice(real) for _ in range(50)]
    attempts = []
    for name in names[: rng.randint(40, 50)]:
        for _ in range(rng.choice((1, 1, 2))):
            attempts.append(
                (
                    t + timedelta(minutes=rng.uniform(0, 120)),
                    name,
                    host(rng.choice(blocks), rng.randrange(1, 250)),
                    rng.choice(user_agents),
                )
            )
    for ts, name, ip, ua in sorted(attempts):
        _attempt(
            add,
            ts,
            name=name,
            ip=ip,
            ua=ua,
            guess="Welcome2025!",
            label="spraying_rotating",
            detail=detail,
            rng=rng,
        )
