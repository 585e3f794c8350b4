"""What the simulated requests look like: records, headers, browser sessions.

A ``Recorder`` gives each record its id and keeps records in a heap until they can be yielded
in timestamp order; ``session`` writes one browser session (a login, some actions, maybe a
logout) of a simulated person at a place. Session ids are raw (random) session keys, as a log
shipper would see them; the importer stores only their keyed hash.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from random import Random
from typing import Any

from tracking.simulator.people import Place, SimUser, rng_for
from tracking.simulator.world import host

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


def _uuid(rng: Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _session_key(rng: Random) -> str:
    return f"{rng.getrandbits(128):032x}"


class Recorder:
    """Builds records and keeps them in a heap until they can be yielded in order."""

    def __init__(self, seed: int, window: tuple[datetime, datetime]) -> None:
        self.heap: list[tuple[datetime, int, dict]] = []
        self.counter = 0
        self.rng = rng_for(seed, "ids", window[0].isoformat(), window[1].isoformat())
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


def headers(country: str, *, api_token: bool = False) -> dict[str, str]:
    result = {
        "Accept": "application/json" if api_token else "text/html,application/xhtml+xml",
        "Accept-Language": LANGUAGES.get(country, "en-US,en;q=0.8"),
        "Host": "shop.example.com",
    }
    if api_token:
        result["Authorization"] = "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    return result


def duration(rng: Random, median: float) -> float:
    return round(rng.lognormvariate(math.log(median), 0.5), 2)


def session(
    add: Callable[..., dict | None],
    user: SimUser,
    t: datetime,
    place: Place,
    rng: Random,
    label: str = "benign",
    detail: str | None = None,
    script: Iterable[str] | None = None,
    gap: tuple[float, float] = (5, 240),
    scale: float = 1.0,
) -> list[dict]:
    """One browser session: a login, then a few actions. Returns the records added.

    ``script`` names the actions (default: ordinary ones for ``user``, their number times
    ``scale``); ``add`` is ``Recorder.add``.
    """
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
        record = add(
            t,
            type=kind,
            username=user.username,
            ip_address=ip,
            user_agent=place.ua,
            endpoint=endpoint,
            method=method,
            status=status,
            duration=duration(rng, median),
            session_id=key if with_session else "",
            headers=headers(country, api_token=api),
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
    actions = list(script) if script is not None else _benign_actions(user, rng, scale)
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


def _benign_actions(user: SimUser, rng: Random, scale: float) -> list[str]:
    choices = ["api", "api_post", "payment", "export", "password", "email", "browse", "admin"]
    weights = [40, 6, 12, 6 if user.office_net else 2, 1, 1, 25, 15 if user.staff else 0]
    n = max(1, round(rng.randint(1, 6) * scale))
    return rng.choices(choices, weights, k=n)
