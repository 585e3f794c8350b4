"""IP → geo and network (ASN/ISP), from local MaxMind databases and an optional HTTP provider.

Readers on ``GEOIP_PATH`` (``GeoLite2-City.mmdb``, ``GeoLite2-ASN.mmdb`` and, when present,
MaxMind's ``GeoIP2-Anonymous-IP.mmdb``) are opened once and reset when settings change; answers
are LRU-cached. The anonymous-IP answer and the Tor exit list (``TRACKING_TOR_EXIT_LIST``,
``tracking.enrich.tor``) give ``network_kind``: ``tor``, ``vpn``, ``public_proxy``,
``residential_proxy``, ``hosting`` or empty. Private, loopback, reserved, link-local,
multicast and unspecified addresses are never looked up.

Country-only records (no city) keep the country centroid's ``latitude``/``longitude`` *only
together with* their large ``accuracy_radius``, and ``city`` stays empty: consumers must read
coordinates through the radius (detection does), never as a point.

The HTTP provider (``TRACKING_GEO_HTTP_URL``, a template with ``{ip}`` returning JSON) is
asked only when the databases have no answer. It runs in the batch step, never in the
request of an ``async_log`` view, with a short timeout and a circuit breaker; a failure
returns ``GeoResult(pending=True)`` so the row is stored with ``geo_pending`` and enriched
later by ``retry_pending_geo()``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import maxminddb
from django.db import transaction

from tracking.conf import on_reload, tracking_settings
from tracking.enrich import tor
from tracking.integrity import macs as integrity
from tracking.models import Activity

logger = logging.getLogger("tracking.enrich")

CITY_DB = "GeoLite2-City.mmdb"
ASN_DB = "GeoLite2-ASN.mmdb"
ANONYMOUS_DB = "GeoIP2-Anonymous-IP.mmdb"
# Anonymous-IP flags in order of precedence, and the network kind each one means.
ANONYMOUS_FLAGS: tuple[tuple[str, str], ...] = (
    ("is_tor_exit_node", "tor"),
    ("is_anonymous_vpn", "vpn"),
    ("is_public_proxy", "public_proxy"),
    ("is_residential_proxy", "residential_proxy"),
    ("is_hosting_provider", "hosting"),
)
NETWORK_KINDS: tuple[str, ...] = tuple(kind for _, kind in ANONYMOUS_FLAGS)
GEO_FIELDS = (
    "isp",
    "asn",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "accuracy_radius",
    "network_kind",
)

# Breaker: after this many consecutive failures the provider is skipped for a cool-down.
BREAKER_THRESHOLD = 3
BREAKER_COOLDOWN = 30.0


@dataclass(slots=True)
class GeoResult:
    values: dict[str, Any] = field(default_factory=dict)
    pending: bool = False  # the lookup is owed: retry later


def is_public(ip: str | None) -> bool:
    if not ip:
        return False
    return _is_public(ip)


@lru_cache(maxsize=8192)
def _is_public(ip: str) -> bool:
    # Parsing an address is ~10 µs; a site sees the same addresses again and again.
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class _Readers:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.city = None
        self.asn = None
        self.anonymous = None

    def get(self):
        if not self.loaded:
            with self.lock:
                if not self.loaded:
                    self.city, self.asn, self.anonymous = self._open()
                    self.loaded = True
        return self.city, self.asn, self.anonymous

    @staticmethod
    def _open():
        folder = tracking_settings.GEOIP_PATH
        out = []
        for name, kind in ((CITY_DB, "City"), (ASN_DB, "ASN"), (ANONYMOUS_DB, "Anonymous-IP")):
            path = os.path.join(str(folder), name) if folder else None
            reader = None
            if path and os.path.exists(path):
                try:
                    reader = maxminddb.open_database(path)
                    # geoip2's check: a City database answers city lookups, an ASN one ASN.
                    database_type = reader.metadata().database_type
                    if kind not in database_type:
                        reader.close()
                        reader = None
                        logger.error("%s is a %s database, not %s", path, database_type, kind)
                except Exception:  # a corrupt database disables lookups, never requests
                    logger.exception("cannot open GeoIP database %s", path)
                    reader = None
            out.append(reader)
        return tuple(out)

    def close(self) -> None:
        with self.lock:
            for reader in (self.city, self.asn, self.anonymous):
                if reader is not None:
                    try:
                        reader.close()
                    except Exception:  # noqa: S110 - closing is best effort
                        pass
            self.city = self.asn = self.anonymous = None
            self.loaded = False


_readers = _Readers()


class _Breaker:
    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.lock = threading.Lock()

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def success(self) -> None:
        with self.lock:
            self.failures = 0
            self.open_until = 0.0

    def failure(self) -> None:
        with self.lock:
            self.failures += 1
            if self.failures >= BREAKER_THRESHOLD:
                self.open_until = time.monotonic() + BREAKER_COOLDOWN


breaker = _Breaker()

# Set when this process stored a row with geo owed; cleared when a retry found none left.
_owed = threading.Event()


def owed() -> bool:
    return _owed.is_set() and breaker.allow()


def _get(reader: Any, ip: str) -> dict[str, Any] | None:
    try:
        record = reader.get(ip)
    except Exception:  # ValueError on odd input, a damaged database
        return None
    return record if isinstance(record, dict) else None


def _name(record: Any) -> str:
    names = record.get("names") if isinstance(record, dict) else None
    return (names.get("en") or "") if isinstance(names, dict) else ""


def _local_lookup(ip: str) -> dict[str, Any]:
    # The raw MaxMind records are read directly: the same fields geoip2's City/ASN models
    # give (English names, the most specific subdivision), without building those models,
    # which was most of a lookup's cost.
    city_reader, asn_reader, anonymous_reader = _readers.get()
    values: dict[str, Any] = {}
    rec = _get(city_reader, ip) if city_reader is not None else None
    if rec is not None:
        country = rec.get("country")
        subdivisions = rec.get("subdivisions")
        location = rec.get("location")
        location = location if isinstance(location, dict) else {}
        values["country"] = (country.get("iso_code") if isinstance(country, dict) else "") or ""
        values["region"] = (
            _name(subdivisions[-1]) if isinstance(subdivisions, list) and subdivisions else ""
        )
        values["city"] = _name(rec.get("city"))
        values["latitude"] = location.get("latitude")
        values["longitude"] = location.get("longitude")
        values["accuracy_radius"] = location.get("accuracy_radius")
    arec = _get(asn_reader, ip) if asn_reader is not None else None
    if arec is not None:
        values["asn"] = arec.get("autonomous_system_number")
        values["isp"] = arec.get("autonomous_system_organization") or ""
    nrec = _get(anonymous_reader, ip) if anonymous_reader is not None else None
    if nrec is not None:
        values["network_kind"] = anonymous_kind(nrec)
    return values


def anonymous_kind(record: dict[str, Any]) -> str:
    """The network kind an Anonymous-IP record says ("" when no flag is set)."""
    for flag, kind in ANONYMOUS_FLAGS:
        if record.get(flag) is True:
            return kind
    return ""


def _http_lookup(ip: str) -> dict[str, Any] | None:
    """Ask the HTTP provider; None when it failed (timeout, error, bad JSON)."""

    url = str(tracking_settings.GEO_HTTP_URL).replace("{ip}", ip)
    # The whole budget is GEO_HTTP_TIMEOUT: half to connect, half to wait for the answer.
    half = float(tracking_settings.GEO_HTTP_TIMEOUT) / 2
    try:
        # Imported here: requests and its dependencies add ~4 MiB to every process that
        # loads this module (web workers, exports), and only this remote lookup uses it.
        import requests

        resp = requests.get(url, timeout=(half, half))
        resp.raise_for_status()
        data = resp.json()
    except Exception as exc:  # any provider failure means "later"
        logger.warning("geo provider failed for an address: %s", type(exc).__name__)
        breaker.failure()
        return None
    breaker.success()
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    mapping = {
        "country": ("country", "country_code", "countryCode"),
        "region": ("region", "regionName"),
        "city": ("city",),
        "latitude": ("latitude", "lat"),
        "longitude": ("longitude", "lon", "lng"),
        "accuracy_radius": ("accuracy_radius",),
        "asn": ("asn",),
        "isp": ("isp", "org", "organization"),
    }
    for key, names in mapping.items():
        for name in names:
            if data.get(name) not in (None, ""):
                out[key] = data[name]
                break
    return _coerce(out)


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if key in ("latitude", "longitude"):
                out[key] = float(value)
            elif key in ("asn", "accuracy_radius"):
                text = str(value).upper().removeprefix("AS").split()[0]
                out[key] = int(text)
            elif key == "country":
                out[key] = str(value).upper()[:2]
            else:
                out[key] = str(value)[: 255 if key == "isp" else 128]
        except (TypeError, ValueError, IndexError):
            continue
    return out


def _make_cache():
    @lru_cache(maxsize=max(int(tracking_settings.GEO_CACHE_SIZE or 0), 1))
    def cached(ip: str) -> tuple:
        return tuple(_local_lookup(ip).items())

    return cached


_cache = None
_http_cache: dict[str, dict[str, Any]] = {}
_http_lock = threading.Lock()


def _reset() -> None:
    global _cache
    _cache = None
    _http_cache.clear()
    _readers.close()
    breaker.success()


on_reload(_reset)


def lookup(ip: str | None) -> GeoResult:
    """Geo/network fields for ``ip``; empty for non-public addresses or when disabled."""
    global _cache
    if tracking_settings.DISABLE_GEOLOCATION or not is_public(ip):
        return GeoResult()
    assert ip is not None
    if _cache is None:
        _cache = _make_cache()
    values = dict(_cache(ip))
    if tor.is_exit(ip):  # the list is fresher than a monthly database and wins
        values["network_kind"] = "tor"
    if values or not tracking_settings.GEO_HTTP_URL:
        return GeoResult(values)
    if ip in _http_cache:
        return GeoResult(dict(_http_cache[ip]))
    if not breaker.allow() or (answer := _http_lookup(ip)) is None:
        later = bool(tracking_settings.GEO_RETRY_LATER)
        if later:
            _owed.set()
        return GeoResult(pending=later)
    with _http_lock:
        if len(_http_cache) >= int(tracking_settings.GEO_CACHE_SIZE or 1):
            _http_cache.pop(next(iter(_http_cache)), None)  # oldest first
        _http_cache[ip] = answer
    return GeoResult(dict(answer))


def retry_pending_geo(limit: int = 1000) -> int:
    """Enrich rows stored while the provider was down; returns how many were completed.

    Geo fields are part of the row MAC, so the MAC is recomputed for rows not yet sealed;
    sealed rows keep their recorded content and are only marked as no longer pending.
    """

    done = 0
    rows = list(Activity.objects.filter(geo_pending=True).order_by("timestamp")[:limit])
    if not rows:
        _owed.clear()
    for row in rows:
        result = lookup(row.ip_address)
        if result.pending:
            continue
        with transaction.atomic():
            updated = 0
            if row.seq is None:
                for key, value in result.values.items():
                    setattr(row, key, value)
                row.geo_pending = False
                row.mac = integrity.row_mac(row)
                # Conditional on still being unsealed: a sealer may have sealed the row since
                # it was read, and changing sealed content would break the chain.
                updated = Activity.objects.filter(pk=row.pk, seq__isnull=True).update(
                    **result.values, geo_pending=False, mac=row.mac
                )
            if not updated:
                Activity.objects.filter(pk=row.pk).update(geo_pending=False)
        done += 1
    return done
