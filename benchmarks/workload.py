"""Synthetic events for the benchmarks: users on their usual networks, some travel, some
anonymous API traffic, all placed by the synthetic world's GeoIP databases."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from tracking.events import Event
from tracking.simulator.world import NETWORKS, host

UTC = dt_timezone.utc

AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "python-requests/2.31.0",
)
# What the request benchmarks send (wrk's script, costs.py): three addresses of every world
# network behind the trusted proxy, and these browsers in turn.
BROWSERS = AGENTS[:3]  # the three browsers of AGENTS


def client_addresses() -> list[str]:
    return [host(n, i) for n in NETWORKS for i in (1, 7, 42)]


ENDPOINTS = (
    ("AUTH", "POST", "/api/auth/login/"),
    ("PAYMENT", "POST", "/api/payments/"),
    ("ACCOUNT", "PATCH", "/api/account/email/"),
    ("DATA", "GET", "/api/reports/"),
    ("API", "GET", "/api/items/"),
)


def events(
    n: int,
    *,
    users: int = 500,
    seed: int = 7,
    start: datetime | None = None,
    span: timedelta | None = None,
) -> Iterator[Event]:
    """``n`` events spread over ``span`` (default: live traffic at 500 events/s, so a writer
    batch covers about a second, as it would on a busy site)."""
    rng = random.Random(seed)
    span = span or timedelta(seconds=n / 500)
    start = start or datetime.now(UTC) - span
    step = span / max(n, 1)
    home = {u: NETWORKS[rng.randrange(len(NETWORKS))] for u in range(users)}
    for i in range(n):
        u = rng.randrange(users)
        network = home[u] if rng.random() < 0.95 else NETWORKS[rng.randrange(len(NETWORKS))]
        type_, method, endpoint = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
        yield Event(
            type=type_,
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=start + step * i,
            username=f"user{u}" if rng.random() < 0.9 else "",
            session_id=f"{u:064x}",
            ip_address=host(network, rng.randrange(1, 250)),
            user_agent=AGENTS[u % len(AGENTS)],
            endpoint=endpoint,
            method=method,
            status=200 if rng.random() < 0.95 else 401,
            duration=round(rng.uniform(5, 300), 1),
            headers={"Accept": "application/json", "User-Agent": AGENTS[u % len(AGENTS)]},
            params={"page": rng.randrange(10)}
            if method == "GET"
            else {"amount": rng.randrange(1000)},
        )
