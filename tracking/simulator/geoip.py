"""Build MaxMind-format GeoIP databases from the synthetic world (tests, demo, benchmarks).

``build_databases(path)`` writes ``GeoLite2-City.mmdb``, ``GeoLite2-ASN.mmdb`` and
``GeoIP2-Anonymous-IP.mmdb`` into ``path``: the names and database types Django's GeoIP2 and
``geoip2.database.Reader`` expect, so ``Reader.city()``/``Reader.asn()``/``Reader.anonymous_ip()``
work unchanged. The anonymous-IP database holds only the world's hosting, VPN, proxy and Tor
networks, with the flags MaxMind sets for them (``anonymous_record``). City-accurate networks carry country,
subdivision, city and location; country-only networks (``Network.city is None``) carry no city
and the country centroid with their large accuracy radius. Writing is atomic (temporary file,
then ``os.replace``) so parallel test runs can all call it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import maxminddb

from tracking.simulator import world

CITY_DB = "GeoLite2-City.mmdb"
ASN_DB = "GeoLite2-ASN.mmdb"
ANONYMOUS_DB = "GeoIP2-Anonymous-IP.mmdb"

# The Anonymous-IP flags MaxMind sets for each kind of network of the world.
ANONYMOUS_FLAGS: dict[str, tuple[str, ...]] = {
    "vpn": ("is_anonymous", "is_anonymous_vpn"),
    "hosting": ("is_anonymous", "is_hosting_provider"),
    "gateway": ("is_hosting_provider",),
    "public_proxy": ("is_anonymous", "is_public_proxy"),
    "residential_proxy": ("is_anonymous", "is_residential_proxy"),
    "tor": ("is_anonymous", "is_tor_exit_node"),
}

# Stable fake geoname ids: geoip2 models expose them, some consumers key on them.
_CONTINENTS = {
    "GB": ("EU", "Europe"),
    "FR": ("EU", "Europe"),
    "DE": ("EU", "Europe"),
    "ES": ("EU", "Europe"),
    "NL": ("EU", "Europe"),
    "UA": ("EU", "Europe"),
    "RU": ("EU", "Europe"),
    "US": ("NA", "North America"),
    "BR": ("SA", "South America"),
    "NG": ("AF", "Africa"),
    "JP": ("AS", "Asia"),
    "SG": ("AS", "Asia"),
    "ID": ("AS", "Asia"),
    "AU": ("OC", "Oceania"),
}

_COUNTRY_TZ = {
    "GB": "Europe/London",
    "FR": "Europe/Paris",
    "DE": "Europe/Berlin",
    "US": "America/Chicago",
    "BR": "America/Sao_Paulo",
    "NG": "Africa/Lagos",
    "RU": "Europe/Moscow",
}


def _country(iso: str) -> dict[str, Any]:
    code, name = _CONTINENTS.get(iso, ("", ""))
    out: dict[str, Any] = {"country": {"iso_code": iso, "names": {"en": iso}}}
    if code:
        out["continent"] = {"code": code, "names": {"en": name}}
    return out


def city_record(network: world.Network) -> dict[str, Any]:
    """The GeoLite2-City record for one network of the world."""
    from mmdb_writer import MmdbF64, MmdbU16

    record = _country(network.country)
    if network.city is None:
        lat, lon = world.COUNTRY_CENTROIDS.get(network.country, (0.0, 0.0))
        location: dict[str, Any] = {
            "latitude": MmdbF64(lat),
            "longitude": MmdbF64(lon),
            "accuracy_radius": MmdbU16(network.accuracy_radius),
        }
        tz = _COUNTRY_TZ.get(network.country)
        if tz:
            location["time_zone"] = tz
        record["location"] = location
        return record
    city = world.CITIES[network.city]
    record["subdivisions"] = [{"iso_code": city.region[:3].upper(), "names": {"en": city.region}}]
    record["city"] = {"names": {"en": city.name}}
    record["location"] = {
        "latitude": MmdbF64(city.latitude),
        "longitude": MmdbF64(city.longitude),
        "accuracy_radius": MmdbU16(network.accuracy_radius),
        "time_zone": city.time_zone,
    }
    return record


def asn_record(network: world.Network) -> dict[str, Any]:
    from mmdb_writer import MmdbU32

    return {
        "autonomous_system_number": MmdbU32(network.asn),
        "autonomous_system_organization": network.org,
    }


def anonymous_record(network: world.Network) -> dict[str, Any] | None:
    """The GeoIP2-Anonymous-IP record for one network (None: the database has no entry)."""
    flags = ANONYMOUS_FLAGS.get(network.kind)
    return dict.fromkeys(flags, True) if flags else None


def _write(target: Path, database_type: str, make_record) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description=f"django-activity-tracking synthetic {database_type} {world_fingerprint()}",
    )
    for network in world.NETWORKS:
        record = make_record(network)
        if record is not None:
            writer.insert_network(IPSet([network.cidr]), record)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer.to_db_file(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def world_fingerprint() -> str:
    """Short digest of the world's networks and cities, written into each database's
    description so that a database built from an older world is rebuilt."""
    text = repr((world.NETWORKS, sorted(world.CITIES.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _current(target: Path) -> bool:
    """Whether ``target`` was built from the present world."""
    try:
        with maxminddb.open_database(str(target)) as reader:
            description = reader.metadata().description or {}
    except Exception:  # a damaged or foreign file is rebuilt
        return False
    return str(description.get("en", "")).endswith(world_fingerprint())


def build_databases(path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Write the three databases into ``path`` (created if needed); existing files built from
    the present world are kept unless ``force``. Safe to call from several processes at once."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, database_type, make in (
        (CITY_DB, "GeoLite2-City", city_record),
        (ASN_DB, "GeoLite2-ASN", asn_record),
        (ANONYMOUS_DB, "GeoIP2-Anonymous-IP", anonymous_record),
    ):
        target = folder / name
        if force or not target.exists() or not _current(target):
            _write(target, database_type, make)
