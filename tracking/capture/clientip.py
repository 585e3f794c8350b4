"""The client's IP address behind an explicit list of trusted reverse proxies.

Forwarding headers are client-controlled: they are read only when the socket peer
(``REMOTE_ADDR``) is inside ``TRACKING_TRUSTED_PROXIES``. Then the client is the right-most
address of ``X-Forwarded-For`` (or, without it, ``X-Real-IP``) that is not itself a trusted
proxy: every hop to its right was added by infrastructure we trust, everything to its left
the client could have forged. (django-ipware's own ``get_client_ip`` trusts the header when
the peer is anybody; its parsers from python-ipware are reused here for tokens, ports,
RFC 7239 elements and IPv4-mapped addresses.)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from python_ipware.modern.parsers import parse_ip as _parse_ip
from python_ipware.modern.parsers import split_proxy_chain

from tracking.conf import on_reload, tracking_settings

MAX_CHAIN_LENGTH = 512

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A validated address (IPv4-mapped unwrapped), cached: peers repeat a lot."""
    return _parse_ip(value)


@dataclass(frozen=True, slots=True)
class ClientAddress:
    ip: str | None  # the client, as far as trusted infrastructure can tell
    remote_addr: str | None  # the socket peer, as received
    forwarded_for: str  # the forwarding chain as received (truncated), for forensics


def parse_networks(values: Any) -> tuple[list[IPNetwork], list[str]]:
    """(valid networks, invalid entries) of a CIDR list; IPv4-mapped CIDRs become IPv4."""
    nets: list[IPNetwork] = []
    bad: list[str] = []
    if isinstance(values, str):
        values = [values]
    for value in values or ():
        try:
            net = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            bad.append(str(value))
            continue
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
            mapped = ipaddress.ip_network("::ffff:0:0/96")
            if net.subnet_of(mapped):
                net = ipaddress.IPv4Network(
                    (int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96)
                )
        nets.append(net)
    return nets, bad


@lru_cache(maxsize=1)
def trusted_networks() -> tuple[IPNetwork, ...]:
    return tuple(parse_networks(tracking_settings.TRUSTED_PROXIES)[0])


on_reload(trusted_networks.cache_clear)


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted_networks())


def normalise_ip(value: str | None) -> str | None:
    """A valid address as text (IPv4-mapped IPv6 unwrapped), or None."""
    ip = parse_ip(value) if value else None
    return str(ip) if ip is not None else None


def _meta(request: Any) -> dict:
    # DRF's Request proxies META to the wrapped HttpRequest.
    inner = getattr(request, "_request", request)
    return getattr(inner, "META", {}) or {}


# Headers longer than this are resolved without the cache, so it holds at most
# MEMO_SIZE small entries whatever clients send.
MEMO_HEADER_LENGTH = 256
MEMO_SIZE = 4096


def client_address(request: Any) -> ClientAddress:
    """Client IP, raw peer and raw forwarding chain of a Django or DRF request."""
    meta = _meta(request)
    raw_remote = str(meta.get("REMOTE_ADDR") or "")
    raw_xff = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    raw_real = str(meta.get("HTTP_X_REAL_IP") or "")
    if len(raw_remote) + len(raw_xff) + len(raw_real) <= MEMO_HEADER_LENGTH:
        # Parsing and checking every hop against the trusted networks is costly next to the
        # rest of the request thread's tracking work, and the same peers and chains recur.
        return _memo_address(raw_remote, raw_xff, raw_real)
    return _address(raw_remote, raw_xff, raw_real)


def _address(raw_remote: str, raw_xff: str, raw_real: str) -> ClientAddress:
    remote = parse_ip(raw_remote) if raw_remote else None
    chain_text = raw_xff or (f"X-Real-IP: {raw_real}" if raw_real else "")
    forwarded = chain_text[:MAX_CHAIN_LENGTH]
    if remote is None:
        return ClientAddress(None, None, forwarded)
    client = remote
    if _trusted(remote):
        hops = split_proxy_chain(raw_xff) if raw_xff else []
        if not hops and raw_real:
            real = parse_ip(raw_real)
            hops = [real] if real is not None else []
        if hops:
            untrusted = [hop for hop in reversed(hops) if not _trusted(hop)]
            # All hops trusted: the left-most is the furthest we can see.
            client = untrusted[0] if untrusted else hops[0]
    return ClientAddress(str(client), str(remote), forwarded)


_memo_address = lru_cache(maxsize=MEMO_SIZE)(_address)
on_reload(_memo_address.cache_clear)  # TRACKING_TRUSTED_PROXIES decides the answer


def client_ip(request: Any) -> str | None:
    """The client IP of a Django ``HttpRequest`` or DRF ``Request`` (for throttles, logs)."""
    return client_address(request).ip
