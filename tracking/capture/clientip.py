"""The client's IP address behind an explicit list of trusted reverse proxies.

Forwarding headers are client-controlled: they are read only when the socket peer
(``REMOTE_ADDR``) is inside ``TRACKING_TRUSTED_PROXIES``. Then ``X-Forwarded-For`` (or,
without it, ``X-Real-IP``) is split on commas — quotes mean nothing in it — and walked from
the right: each hop that is a trusted proxy was appended by infrastructure we trust, so the
walk goes on past it; the first hop that is not trusted is the client. A token that is not
an address stops the walk too, and the client is then the hop to its right (the last trusted
one, or the peer itself): whatever lies further left the client could have written.

One hop is one address, optionally ``a.b.c.d:port``, ``[v6]`` or ``[v6]:port``; IPv4-mapped
IPv6 is unwrapped to IPv4. Quotes, zone ids, ``for=`` elements and anything else make the
token invalid.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tracking.conf import on_reload, tracking_settings

MAX_CHAIN_LENGTH = 512
# Longest token that can be an address with a port ("[" + 45 + "]:65535").
MAX_TOKEN_LENGTH = 64

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def _host_of(token: str) -> str | None:
    """The address part of one hop token (port and IPv6 brackets removed), or None."""
    if token.startswith("["):
        end = token.find("]")
        if end == -1:
            return None
        rest = token[end + 1 :]
        if rest and not (rest[0] == ":" and _is_port(rest[1:])):
            return None
        host = token[1:end]
        return host if ":" in host else None  # brackets only around IPv6
    if token.count(":") == 1:  # IPv4:port
        host, _, port = token.partition(":")
        return host if _is_port(port) else None
    return token


def parse_ip(value: str) -> IPAddress | None:
    """One hop as a validated address (IPv4-mapped unwrapped), or None."""
    token = value.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    return _parse_token(token)


@lru_cache(maxsize=4096)  # peers and hops repeat; only short tokens reach the cache
def _parse_token(token: str) -> IPAddress | None:
    host = _host_of(token)
    if not host or "%" in host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def hops_from_right(chain: str) -> Iterator[str]:
    """The comma-separated tokens of a forwarding chain, right-most first (not stripped)."""
    end = len(chain)
    while True:
        start = chain.rfind(",", 0, end)
        yield chain[start + 1 : end]
        if start == -1:
            return
        end = start


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
            mapped = ipaddress.IPv6Network("::ffff:0:0/96")
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


def _trusted(ip: IPAddress) -> bool:
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


def resolve(remote: IPAddress, chain: str) -> IPAddress:
    """The client behind the trusted peer ``remote`` given its forwarding chain."""
    client = remote
    for token in hops_from_right(chain):
        hop = parse_ip(token)
        if hop is None:
            return client  # the hop to the right of an invalid token
        client = hop
        if not _trusted(hop):
            return hop
    return client  # every hop trusted: the left-most is the furthest we can see


def _address(raw_remote: str, raw_xff: str, raw_real: str) -> ClientAddress:
    remote = parse_ip(raw_remote) if raw_remote else None
    chain_text = raw_xff or (f"X-Real-IP: {raw_real}" if raw_real else "")
    forwarded = chain_text[:MAX_CHAIN_LENGTH]
    if remote is None:
        return ClientAddress(None, None, forwarded)
    client = remote
    if _trusted(remote) and (raw_xff or raw_real):
        client = resolve(remote, raw_xff or raw_real)
    return ClientAddress(str(client), str(remote), forwarded)


_memo_address = lru_cache(maxsize=MEMO_SIZE)(_address)
on_reload(_memo_address.cache_clear)  # TRACKING_TRUSTED_PROXIES decides the answer


def client_ip(request: Any) -> str | None:
    """The client IP of a Django ``HttpRequest`` or DRF ``Request`` (for throttles, logs)."""
    return client_address(request).ip
