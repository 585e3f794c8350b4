"""A small synthetic world of places and networks.

The GeoIP databases used by the tests, the demo and the detection benchmark are built from
this table (``tracking.simulator.geoip``), so all three agree on where an address is. The
address ranges are arbitrary public blocks: what matters is that our own databases place them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country: str  # ISO alpha-2
    region: str
    latitude: float
    longitude: float
    time_zone: str


@dataclass(frozen=True, slots=True)
class Network:
    cidr: str
    asn: int
    org: str
    # residential | mobile | hosting | vpn | corporate | hotel | satellite | tor |
    # residential_proxy | public_proxy | gateway (a cloud security gateway: a hosting network
    # to GeoIP, never used by attackers in the simulation)
    kind: str
    city: str | None  # key into CITIES; None with country set = country-only record
    country: str
    accuracy_radius: int  # km


CITIES: dict[str, City] = {
    "london": City("London", "GB", "England", 51.5074, -0.1278, "Europe/London"),
    "manchester": City("Manchester", "GB", "England", 53.4808, -2.2426, "Europe/London"),
    "reading": City("Reading", "GB", "England", 51.4543, -0.9781, "Europe/London"),
    "paris": City("Paris", "FR", "Ile-de-France", 48.8566, 2.3522, "Europe/Paris"),
    "lyon": City("Lyon", "FR", "Auvergne-Rhone-Alpes", 45.7640, 4.8357, "Europe/Paris"),
    "berlin": City("Berlin", "DE", "Berlin", 52.5200, 13.4050, "Europe/Berlin"),
    "potsdam": City("Potsdam", "DE", "Brandenburg", 52.3906, 13.0645, "Europe/Berlin"),
    "munich": City("Munich", "DE", "Bavaria", 48.1351, 11.5820, "Europe/Berlin"),
    "madrid": City("Madrid", "ES", "Madrid", 40.4168, -3.7038, "Europe/Madrid"),
    "new_york": City("New York", "US", "New York", 40.7128, -74.0060, "America/New_York"),
    "newark": City("Newark", "US", "New Jersey", 40.7357, -74.1724, "America/New_York"),
    "san_francisco": City(
        "San Francisco", "US", "California", 37.7749, -122.4194, "America/Los_Angeles"
    ),
    "chicago": City("Chicago", "US", "Illinois", 41.8781, -87.6298, "America/Chicago"),
    "lagos": City("Lagos", "NG", "Lagos", 6.5244, 3.3792, "Africa/Lagos"),
    "moscow": City("Moscow", "RU", "Moscow", 55.7558, 37.6173, "Europe/Moscow"),
    "sao_paulo": City("Sao Paulo", "BR", "Sao Paulo", -23.5505, -46.6333, "America/Sao_Paulo"),
    "tokyo": City("Tokyo", "JP", "Tokyo", 35.6762, 139.6503, "Asia/Tokyo"),
    "singapore": City("Singapore", "SG", "Singapore", 1.3521, 103.8198, "Asia/Singapore"),
    "sydney": City("Sydney", "AU", "New South Wales", -33.8688, 151.2093, "Australia/Sydney"),
    "jakarta": City("Jakarta", "ID", "Jakarta", -6.2088, 106.8456, "Asia/Jakarta"),
    "amsterdam": City("Amsterdam", "NL", "North Holland", 52.3676, 4.9041, "Europe/Amsterdam"),
    "kyiv": City("Kyiv", "UA", "Kyiv", 50.4501, 30.5234, "Europe/Kyiv"),
}

# Country centroids used for country-only records.
COUNTRY_CENTROIDS: dict[str, tuple[float, float]] = {
    "GB": (54.0, -2.0),
    "FR": (46.0, 2.0),
    "DE": (51.0, 9.0),
    "US": (38.0, -97.0),
    "BR": (-10.0, -55.0),
    "NG": (10.0, 8.0),
    "RU": (60.0, 100.0),
}

NETWORKS: tuple[Network, ...] = (
    # residential broadband (city-accurate)
    Network("81.2.69.0/24", 64600, "Thames Broadband", "residential", "london", "GB", 10),
    Network("81.2.70.0/24", 64600, "Thames Broadband", "residential", "manchester", "GB", 10),
    Network("81.2.71.0/24", 64600, "Thames Broadband", "residential", "reading", "GB", 10),
    Network("90.80.1.0/24", 64610, "Gallic Fibre", "residential", "paris", "FR", 10),
    Network("90.80.2.0/24", 64610, "Gallic Fibre", "residential", "lyon", "FR", 10),
    Network("91.60.1.0/24", 64620, "Spree Kabel", "residential", "berlin", "DE", 5),
    Network("91.60.2.0/24", 64620, "Spree Kabel", "residential", "potsdam", "DE", 5),
    Network("91.60.3.0/24", 64620, "Spree Kabel", "residential", "munich", "DE", 5),
    Network("83.40.1.0/24", 64630, "Meseta Telecom", "residential", "madrid", "ES", 10),
    Network("24.30.1.0/24", 64640, "Hudson Cable", "residential", "new_york", "US", 10),
    Network("24.30.2.0/24", 64640, "Hudson Cable", "residential", "newark", "US", 10),
    Network("24.30.3.0/24", 64641, "Bay Fiber", "residential", "san_francisco", "US", 10),
    Network("24.30.4.0/24", 64642, "Lakeshore Net", "residential", "chicago", "US", 10),
    Network("126.10.1.0/24", 64650, "Kanto Hikari", "residential", "tokyo", "JP", 5),
    Network("175.40.1.0/24", 64660, "Harbour Broadband", "residential", "sydney", "AU", 10),
    Network("177.20.1.0/24", 64670, "Paulista Net", "residential", "sao_paulo", "BR", 20),
    Network("105.112.1.0/24", 64680, "Eko Broadband", "residential", "lagos", "NG", 20),
    Network("95.30.1.0/24", 64690, "Volga Telecom", "residential", "moscow", "RU", 20),
    Network("93.180.1.0/24", 64695, "Dnipro Net", "residential", "kyiv", "UA", 20),
    Network("36.80.1.0/24", 64697, "Nusantara Net", "residential", "jakarta", "ID", 20),
    # corporate offices
    Network("62.30.10.0/24", 64700, "Acme Corp", "corporate", "london", "GB", 5),
    Network("62.30.11.0/24", 64700, "Acme Corp", "corporate", "berlin", "DE", 5),
    Network("62.30.12.0/24", 64700, "Acme Corp", "corporate", "new_york", "US", 5),
    # mobile carriers: geolocated to the capital with a large accuracy radius
    Network("31.94.1.0/24", 64800, "Albion Mobile", "mobile", "london", "GB", 500),
    Network("37.160.1.0/24", 64810, "Hexagone Mobile", "mobile", "paris", "FR", 500),
    Network("46.80.1.0/24", 64820, "Bund Mobil", "mobile", "berlin", "DE", 400),
    Network("172.56.1.0/24", 64830, "Liberty Wireless", "mobile", None, "US", 1000),
    # country-only records (no city)
    Network("2.16.1.0/24", 64900, "Albion Transit", "residential", None, "GB", 200),
    Network("2.16.2.0/24", 64910, "Gallic Transit", "residential", None, "FR", 200),
    # hotel / travel networks
    Network("203.0.0.0/24", 65010, "Lodging Wifi Co", "hotel", "madrid", "ES", 20),
    Network("203.0.1.0/24", 65010, "Lodging Wifi Co", "hotel", "tokyo", "JP", 20),
    Network("203.0.2.0/24", 65010, "Lodging Wifi Co", "hotel", "new_york", "US", 20),
    # hosting / VPN exits (what attackers like)
    Network("185.220.1.0/24", 65100, "Anon Hosting Ltd", "hosting", "amsterdam", "NL", 50),
    Network("185.220.2.0/24", 65100, "Anon Hosting Ltd", "hosting", "london", "GB", 50),
    Network("185.220.3.0/24", 65100, "Anon Hosting Ltd", "hosting", "berlin", "DE", 50),
    Network("45.150.1.0/24", 65110, "FastVPN Exit", "vpn", "london", "GB", 100),
    Network("45.150.2.0/24", 65110, "FastVPN Exit", "vpn", "new_york", "US", 100),
    Network("45.150.3.0/24", 65110, "FastVPN Exit", "vpn", "paris", "FR", 100),
    Network("45.150.4.0/24", 65110, "FastVPN Exit", "vpn", "singapore", "SG", 100),
    Network("193.32.1.0/24", 65120, "Bulletproof Cloud", "hosting", "moscow", "RU", 50),
    Network("193.32.2.0/24", 65120, "Bulletproof Cloud", "hosting", "lagos", "NG", 50),
    Network("193.32.3.0/24", 65120, "Bulletproof Cloud", "hosting", "jakarta", "ID", 50),
    Network("193.32.4.0/24", 65120, "Bulletproof Cloud", "hosting", "sao_paulo", "BR", 50),
    # a cloud security gateway the London office moves behind (a hosting network)
    Network("147.161.1.0/24", 65400, "Shield Secure Edge", "gateway", "london", "GB", 50),
    # anonymizers the Anonymous-IP database knows (tracking.simulator.geoip)
    Network("171.25.193.0/24", 65300, "Relay Collective", "tor", "amsterdam", "NL", 50),
    Network("98.40.1.0/24", 65310, "Metro Residential", "residential_proxy", "chicago", "US", 10),
    Network("64.20.1.0/24", 65320, "Open Proxy Net", "public_proxy", "paris", "FR", 50),
    # in-flight / satellite relays (location meaningless)
    Network("100.200.1.0/24", 65200, "SkyLink Satellite", "satellite", None, "US", 1000),
    # the same gateway's egress for the New York office: a hosting address 1,100 km from the
    # users' homes (its location is the gateway's, never theirs: no impossible travel)
    Network("147.161.2.0/24", 65400, "Shield Secure Edge", "gateway", "chicago", "US", 50),
    # second broadband providers: where people who move house get a new line
    # (``lookalikes.moved_house``); after the first ones, so every city's first network stays
    Network("81.2.72.0/24", 64601, "Pennine Fibre", "residential", "manchester", "GB", 10),
    Network("90.80.3.0/24", 64611, "Rhone Net", "residential", "lyon", "FR", 10),
    Network("91.60.4.0/24", 64621, "Isar Glasfaser", "residential", "munich", "DE", 5),
)

HOSTING_ASNS: tuple[int, ...] = tuple(
    sorted({n.asn for n in NETWORKS if n.kind in ("hosting", "vpn")})
)
MOBILE_ASNS: tuple[int, ...] = tuple(sorted({n.asn for n in NETWORKS if n.kind == "mobile"}))
SATELLITE_ASNS: tuple[int, ...] = tuple(sorted({n.asn for n in NETWORKS if n.kind == "satellite"}))


def networks_of(kind: str | None = None, city: str | None = None) -> list[Network]:
    return [
        n for n in NETWORKS if (kind is None or n.kind == kind) and (city is None or n.city == city)
    ]


def host(network: Network, index: int) -> str:
    """The ``index``-th usable address (1..254) of a /24 network."""
    base = network.cidr.split("/")[0].rsplit(".", 1)[0]
    return f"{base}.{1 + (index % 254)}"
