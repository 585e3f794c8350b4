"""GeoIP databases built from the synthetic world, and the geo enrichment on top of them."""

from __future__ import annotations

import geoip2.database
import pytest

from tracking.simulator import world
from tracking.simulator.geoip import ANONYMOUS_DB, ASN_DB, CITY_DB, build_databases


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    path = tmp_path_factory.mktemp("geoip")
    build_databases(path)
    city = geoip2.database.Reader(str(path / CITY_DB))
    asn = geoip2.database.Reader(str(path / ASN_DB))
    yield city, asn
    city.close()
    asn.close()


def test_database_types(readers):
    city, asn = readers
    assert city.metadata().database_type == "GeoLite2-City"
    assert asn.metadata().database_type == "GeoLite2-ASN"


@pytest.mark.parametrize("network", [n for n in world.NETWORKS if n.city], ids=lambda n: n.cidr)
def test_city_networks_resolve_to_their_city(readers, network):
    city_reader, asn_reader = readers
    ip = world.host(network, 7)
    rec = city_reader.city(ip)
    expected = world.CITIES[network.city]
    assert rec.country.iso_code == network.country
    assert rec.city.name == expected.name
    assert rec.subdivisions.most_specific.name == expected.region
    assert rec.location.latitude == pytest.approx(expected.latitude)
    assert rec.location.longitude == pytest.approx(expected.longitude)
    assert rec.location.accuracy_radius == network.accuracy_radius
    assert rec.location.time_zone == expected.time_zone
    a = asn_reader.asn(ip)
    assert a.autonomous_system_number == network.asn
    assert a.autonomous_system_organization == network.org


def test_country_only_network_has_no_city(readers):
    city_reader, _ = readers
    net = next(n for n in world.NETWORKS if n.cidr == "2.16.1.0/24")
    rec = city_reader.city(world.host(net, 3))
    assert rec.country.iso_code == "GB"
    assert rec.city.name is None
    assert rec.location.accuracy_radius == 200
    assert (rec.location.latitude, rec.location.longitude) == world.COUNTRY_CENTROIDS["GB"]


def test_unknown_address_not_found(readers):
    import geoip2.errors

    city_reader, _ = readers
    with pytest.raises(geoip2.errors.AddressNotFoundError):
        city_reader.city("8.8.8.8")


def test_build_is_idempotent(tmp_path):
    build_databases(tmp_path)
    first = (tmp_path / CITY_DB).stat().st_mtime_ns
    build_databases(tmp_path)
    assert (tmp_path / CITY_DB).stat().st_mtime_ns == first
    build_databases(tmp_path, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert geoip2.database.Reader(str(tmp_path / CITY_DB)).city("81.2.69.9").city.name == "London"


# --- enrichment on top of the databases (tracking.enrich.geo) ---------------------------

from django.test import override_settings  # noqa: E402

from tracking.enrich import geo  # noqa: E402


def test_lookup_city_network():
    r = geo.lookup("81.2.69.10")
    assert not r.pending
    assert r.values == {
        "country": "GB",
        "region": "England",
        "city": "London",
        "latitude": 51.5074,
        "longitude": -0.1278,
        "accuracy_radius": 10,
        "asn": 64600,
        "isp": "Thames Broadband",
    }


def test_lookup_country_only_keeps_centroid_with_radius():
    r = geo.lookup("2.16.2.4")
    assert r.values["country"] == "FR" and r.values["city"] == ""
    assert r.values["accuracy_radius"] == 200
    assert (r.values["latitude"], r.values["longitude"]) == world.COUNTRY_CENTROIDS["FR"]


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "127.0.0.1",
        "192.168.1.1",
        "169.254.1.1",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        "not-an-ip",
        None,
        "",
    ],
)
def test_non_public_not_looked_up(ip, monkeypatch):
    monkeypatch.setattr(geo, "_local_lookup", lambda ip: pytest.fail("looked up"))
    assert geo.lookup(ip).values == {}


def test_disable_geolocation():
    with override_settings(DISABLE_GEOLOCATION=True):
        assert geo.lookup("81.2.69.10").values == {}
    assert geo.lookup("81.2.69.10").values["city"] == "London"


def test_readers_follow_setting_changes(tmp_path):
    with override_settings(GEOIP_PATH=str(tmp_path / "empty")):
        assert geo.lookup("81.2.69.10").values == {}
    assert geo.lookup("81.2.69.10").values["city"] == "London"


def test_unknown_public_address_empty():
    assert geo.lookup("8.8.8.8").values == {}


def _geoip2_reference(city_reader, asn_reader, ip: str) -> dict:
    """What the lookup gave when it went through geoip2's City/ASN models."""
    import geoip2.errors

    values: dict = {}
    try:
        rec = city_reader.city(ip)
    except geoip2.errors.AddressNotFoundError:
        rec = None
    if rec is not None:
        values.update(
            country=rec.country.iso_code or "",
            region=rec.subdivisions.most_specific.name or "",
            city=rec.city.name or "",
            latitude=rec.location.latitude,
            longitude=rec.location.longitude,
            accuracy_radius=rec.location.accuracy_radius,
        )
    try:
        arec = asn_reader.asn(ip)
    except geoip2.errors.AddressNotFoundError:
        arec = None
    if arec is not None:
        values.update(
            asn=arec.autonomous_system_number, isp=arec.autonomous_system_organization or ""
        )
    return values


def _anonymous_reference(reader, ip: str) -> dict:
    """The network kind geoip2's AnonymousIP model gives, in the lookup's precedence."""
    import geoip2.errors

    try:
        rec = reader.anonymous_ip(ip)
    except geoip2.errors.AddressNotFoundError:
        return {}
    for attr, kind in (
        ("is_tor_exit_node", "tor"),
        ("is_anonymous_vpn", "vpn"),
        ("is_public_proxy", "public_proxy"),
        ("is_residential_proxy", "residential_proxy"),
        ("is_hosting_provider", "hosting"),
    ):
        if getattr(rec, attr):
            return {"network_kind": kind}
    return {"network_kind": ""}


def test_raw_records_give_what_geoip2_models_give(readers, tmp_path_factory):
    city_reader, asn_reader = readers
    path = tmp_path_factory.mktemp("anon")
    build_databases(path)
    anonymous_reader = geoip2.database.Reader(str(path / ANONYMOUS_DB))
    addresses = ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"]
    for network in world.NETWORKS:
        addresses += [world.host(network, 1), world.host(network, 200)]
    kinds = set()
    for ip in addresses:
        expected = _geoip2_reference(city_reader, asn_reader, ip)
        expected.update(_anonymous_reference(anonymous_reader, ip))
        assert geo._local_lookup(ip) == expected, ip
        kinds.add(expected.get("network_kind", ""))
    anonymous_reader.close()
    assert kinds == {"", "vpn", "hosting", "public_proxy", "residential_proxy", "tor"}


def test_database_of_the_wrong_type_is_not_used(tmp_path):
    build_databases(tmp_path)
    (tmp_path / CITY_DB).unlink()
    (tmp_path / CITY_DB).write_bytes((tmp_path / ASN_DB).read_bytes())
    with override_settings(GEOIP_PATH=str(tmp_path)):
        values = geo.lookup("81.2.69.10").values
    assert "city" not in values and values["asn"] == 64600


def test_is_public_caches_by_text():
    geo._is_public.cache_clear()
    assert geo.is_public("81.2.69.10") and geo.is_public("81.2.69.10")
    assert not geo.is_public("10.0.0.1") and not geo.is_public("garbage")
    assert geo._is_public.cache_info().hits == 1
