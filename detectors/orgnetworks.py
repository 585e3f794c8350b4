"""Organisation networks: the office, the corporate VPN, the security gateway.

An address in one of them is expected for everyone in the organisation: it is never a "new"
network, a travelled-to place or an anonymous exit (``Observation.trusted_network`` carries the
network's name and the detectors stand aside). They come from configuration
(``TRACKING_TRUSTED_NETWORKS``: CIDRs or AS numbers by name, ``parse_trusted``) and from
learning: :class:`NetworkLearner` notices a network new to several established users who reach
it with their own browsers, in their usual country, within a day, while the site had hardly
seen it before (a team moving behind a security gateway; never a consumer ISP or a mobile
carrier many users already come from) and proposes it; the app stores it, shows it and lets a reviewer revoke it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.geo import parse_network
from detectors.observation import Observation
from detectors.population import Population
from detectors.profile import UserProfile, ua_key

DAY = 86400.0
# A gateway or office egress is an ordinary or hosting network; proxies and Tor never are.
LEARNABLE_KINDS = frozenset({"", "hosting", "vpn"})
# Population counter of teaching logins per AS (namespace of ``detectors.population``).
SITE_FEATURE = "site_asn"


def parse_asn(value: Any) -> int | None:
    """``64700``, ``"64700"`` or ``"AS64700"`` → 64700; None when it is not an AS number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**32 else None
    if isinstance(value, str):
        text = value.strip().upper().removeprefix("AS")
        if text.isdigit():
            number = int(text)
            return number if 0 < number < 2**32 else None
    return None


@dataclass
class TrustedNetworks:
    """Named networks by CIDR and by AS number; ``name_for`` answers in a few lookups."""

    cidrs: list[tuple[Any, str]] = field(default_factory=list)
    asns: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.cidrs or self.asns)

    def add(self, entry: Any, name: str) -> None:
        """Add one CIDR / address / AS number (raises ``ValueError`` naming it)."""
        asn = parse_asn(entry)
        if asn is not None:
            self.asns.setdefault(asn, name)
            return
        if not isinstance(entry, str):
            raise ValueError(f"{entry!r} is neither a CIDR nor an AS number")
        try:
            self.cidrs.append((parse_network(entry), name))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{entry!r} is neither a CIDR nor an AS number ({exc})") from None

    def name_for(self, ip: str | None, asn: int | None) -> str:
        if asn is not None and asn in self.asns:
            return self.asns[asn]
        if ip and self.cidrs:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return ""
            for network, name in self.cidrs:
                if addr.version == network.version and addr in network:
                    return name
        return ""


def parse_trusted(value: Any) -> TrustedNetworks:
    """``TRACKING_TRUSTED_NETWORKS`` → :class:`TrustedNetworks` (``ValueError`` names the
    offending entry)."""
    trusted = TrustedNetworks()
    if value in (None, {}):
        return trusted
    if not isinstance(value, Mapping):
        raise ValueError(
            'must be a dict of name → list of CIDRs or AS numbers, e.g. {"Office": '
            '["198.51.100.0/24", "AS64700"]}'
        )
    for name, entries in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"network names must be non-empty text, got {name!r}")
        if isinstance(entries, str | int) and not isinstance(entries, bool):
            entries = [entries]
        if not isinstance(entries, list | tuple) or not entries:
            raise ValueError(f"{name!r}: give a non-empty list of CIDRs or AS numbers")
        for entry in entries:
            try:
                trusted.add(entry, name)
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
    return trusted


@dataclass
class NetworkLearner:
    """Proposes organisation networks from logins.

    A successful login is *evidence* for its AS when the user is established (``min_events``
    teaching events), the network is new to the user and (nearly: ``max_site_uses``) to the site,
    the exact user agent and the country are ones the user knows, and the address is not a proxy
    or Tor exit nor already trusted. When
    ``min_users`` distinct users give evidence for the same AS within ``window_days``, the AS is
    proposed (``learned``). ``candidates`` (AS → {user key: epoch}) is the state the app stores
    between batches.
    """

    min_users: int = 3
    min_events: int = 20
    window_days: float = 1.0
    # A network the site's users already use (consumer ISPs, mobile carriers) is not new:
    # at most this many teaching logins through it before (population counters).
    max_site_uses: int = 10
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)
    learned: dict[str, list[str]] = field(default_factory=dict)
    # "AS<n>|<user key>" of the evidence noted since loading (what the app writes back).
    touched: set[str] = field(default_factory=set)

    @staticmethod
    def population_keys(obs: Observation) -> list[tuple[str, str]]:
        """The population counters ``evidence`` reads (and ``taught`` writes)."""
        if obs.type != "AUTH" or obs.asn is None:
            return []
        return [(SITE_FEATURE, str(obs.asn)), ("asn", str(obs.asn))]

    def taught(self, obs: Observation, population: Population | None) -> None:
        """Count a login that taught (how much the site already uses its network)."""
        if population is not None and obs.type == "AUTH" and obs.asn is not None:
            population.add(SITE_FEATURE, str(obs.asn))

    def site_uses(self, obs: Observation, population: Population | None) -> int:
        if population is None or obs.asn is None:
            return 0
        asn = str(obs.asn)
        # The risk score's counters know the site's history from before this learner existed.
        return max(population.count(SITE_FEATURE, asn), population.count("asn", asn))

    def evidence(
        self, obs: Observation, profile: UserProfile | None, population: Population | None = None
    ) -> bool:
        if (
            profile is None
            or obs.type != "AUTH"
            or obs.failed
            or obs.asn is None
            or obs.trusted_network
            or obs.network_kind not in LEARNABLE_KINDS
            or profile.events < self.min_events
        ):
            return False
        now = obs.epoch
        # The user's own browser (the exact user agent, not only its family) in their country,
        # through a network new to the user and (nearly) new to the site.
        return (
            profile.count("asn", str(obs.asn)) == 0
            and self.site_uses(obs, population) <= self.max_site_uses
            and bool(obs.user_agent)
            and profile.known("ua", ua_key(obs.user_agent), now)
            and bool(obs.country)
            and profile.known("country", obs.country, now)
        )

    def observe(
        self, obs: Observation, profile: UserProfile | None, population: Population | None = None
    ) -> str:
        """Note a login; returns the AS key ("AS64700") when it makes the network learned."""
        if not self.evidence(obs, profile, population):
            return ""
        assert profile is not None and obs.asn is not None
        key = f"AS{obs.asn}"
        if key in self.learned:
            return ""
        users = self.candidates.setdefault(key, {})
        horizon = obs.epoch - self.window_days * DAY
        for user in [u for u, t in users.items() if t < horizon]:
            del users[user]
        users[profile.key or ""] = obs.epoch
        self.touched.add(f"{key}|{profile.key or ''}")
        if len(users) >= self.min_users:
            self.learned[key] = sorted(users)
            del self.candidates[key]
            return key
        return ""

    def name_for(self, obs: Observation) -> str:
        """The name of a network learned during this batch that ``obs`` is in ("" if none)."""
        if obs.asn is None or not self.learned:
            return ""
        key = f"AS{obs.asn}"
        return f"learned {key}" if key in self.learned else ""
