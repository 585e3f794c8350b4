"""Load N activities into PostgreSQL fast: rows generated in Python (encrypted headers and
params with each row's id as associated data, valid row MACs) streamed into ``COPY``.

The rows bypass the writer (no enrichment, detection or sealing: they are pre-enriched from
the synthetic world and about 2% carry a detection verdict), so ``Rollup`` rows are rebuilt
afterwards exactly as the writer would have maintained them.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from types import SimpleNamespace

from .workload import AGENTS, ENDPOINTS

UTC = dt_timezone.utc

DEVICES = {
    AGENTS[0]: ("Other", "Windows", "Chrome", False, False),
    AGENTS[1]: ("iPhone", "iOS", "Mobile Safari", True, False),
    AGENTS[2]: ("Other", "Linux", "Firefox", False, False),
    AGENTS[3]: ("Other", "Other", "Python Requests", False, True),
}
FLAG_TAGS = ("impossible_travel", "new_asn", "credential_stuffing", "bulk_export")


def load(n: int, *, days: int = 90, users: int = 2000, seed: int = 11, progress=print) -> float:
    """Append ``n`` activities spread over the last ``days`` days; returns seconds taken."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from tracking.models import Activity
    from tracking.simulator.world import NETWORKS
    from tracking.storage.stats import rebuild_rollups

    started = time.perf_counter()
    rng = random.Random(seed)
    User = get_user_model()
    existing = set(
        User.objects.filter(username__startswith="bench").values_list("username", flat=True)
    )
    User.objects.bulk_create(
        [User(username=f"bench{u}") for u in range(users) if f"bench{u}" not in existing],
        batch_size=1000,
    )
    people = list(User.objects.filter(username__startswith="bench").values_list("pk", "username"))
    homes = {pk: NETWORKS[rng.randrange(len(NETWORKS))] for pk, _ in people}
    fields = Activity._meta.concrete_fields
    columns = ", ".join(f'"{f.column}"' for f in fields)
    table = Activity._meta.db_table
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    step = (end - start) / max(n, 1)

    def rows():
        for a in activities(
            n, people=people, homes=homes, start=start, step=step, rng=rng, table=table
        ):
            yield [getattr(a, f.attname) for f in fields]

    with connection.cursor() as cur:
        with cur.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # noqa: S608
            for i, row in enumerate(rows(), 1):
                copy.write_row(row)
                if i % 100_000 == 0:
                    progress(f"  loaded {i:,} rows ({time.perf_counter() - started:.0f} s)")
        cur.execute(f"ANALYZE {table}")
    rebuild_rollups()
    return time.perf_counter() - started


def activities(
    n: int, *, people: list[tuple], homes: dict, start: datetime, step: timedelta, rng, table: str
):
    """``n`` synthetic activity rows as the table stores them: every concrete column set,
    headers and params encrypted with the row's id as associated data, a valid row MAC."""
    from tracking import outcome
    from tracking.integrity import crypto
    from tracking.integrity.macs import row_mac
    from tracking.simulator.world import CITIES, NETWORKS, host

    for i in range(n):
        pk, username = people[rng.randrange(len(people))] if rng.random() < 0.8 else (None, "")
        network = homes.get(pk) if pk and rng.random() < 0.95 else None
        network = network or NETWORKS[rng.randrange(len(NETWORKS))]
        city = CITIES.get(network.city) if network.city else None
        type_, method, endpoint = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
        agent = AGENTS[rng.randrange(len(AGENTS))]
        device, os_, browser, mobile, bot = DEVICES[agent]
        flagged = rng.random() < 0.02
        ident = uuid.UUID(int=rng.getrandbits(128), version=4)
        ip = host(network, rng.randrange(1, 250))
        a = SimpleNamespace(
            id=ident,
            timestamp=start + step * i,
            type=type_,
            flagged=flagged,
            tags=[FLAG_TAGS[rng.randrange(len(FLAG_TAGS))]] if flagged else [],
            user_id=pk,
            username=username,
            session_id=f"{rng.getrandbits(256):064x}",
            ip_address=ip,
            remote_addr=ip,
            forwarded_for="",
            isp=network.org,
            asn=network.asn,
            country=network.country,
            region=city.region if city else "",
            city=city.name if city else "",
            latitude=city.latitude if city else None,
            longitude=city.longitude if city else None,
            accuracy_radius=network.accuracy_radius,
            network_kind="",
            geo_pending=False,
            device=device,
            os=os_,
            browser=browser,
            is_mobile=mobile,
            is_bot=bot,
            user_agent=agent,
            endpoint=endpoint,
            method=method,
            status=200 if rng.random() < 0.95 else 401,
            headers={"Accept": "application/json", "User-Agent": agent},
            params={"page": i % 10} if method == "GET" else {"amount": i % 1000},
            duration=round(rng.uniform(5, 300), 1),
            risk_score=0.85 if flagged else round(rng.random() * 0.3, 3),
            severity="high" if flagged else "",
            review_status="open",
            reviewed_by_id=None,
            reviewed_at=None,
            seq=None,
        )
        a.outcome = outcome.from_status(a.status)
        a.mac = row_mac(a)
        a.headers = crypto.encrypt(a.headers, f"{table}.headers.{ident}")
        a.params = crypto.encrypt(a.params, f"{table}.params.{ident}")
        a.tags = "," + ",".join(a.tags) + "," if a.tags else ""
        yield a
