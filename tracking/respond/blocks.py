"""Blocks: create, look up (per-process cache) and lift.

Blocks live in the database so every process sees them. The hot path (the authentication
backend, ``assess``) reads a per-process snapshot of the active blocks, reloaded at most every
``TRACKING_BLOCK_CACHE_SECONDS`` and at once in the process that creates or lifts one; expiry
is judged against the clock on every lookup, so an expired block never refuses anyone.

Addresses in ``TRACKING_NEVER_BLOCK`` are never refused and never cause a block. An
``account`` block refuses the account only from networks its detection profile does not know
(the owner at a known address is never locked out).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from detectors.profile import ip_prefix
from tracking import signals
from tracking.capture.clientip import IPNetwork, normalise_ip, parse_networks
from tracking.conf import on_reload, tracking_settings
from tracking.detection import profiles as profile_store
from tracking.models import Block, BlockScope

logger = logging.getLogger("tracking.respond")

SCOPES = tuple(BlockScope.values)
MANUAL = "manual"


class BlockError(ValueError):
    """A block that cannot be created or lifted (the message says why)."""


def username_key(username: Any) -> str:
    """The form account names are compared in: case-folded, at most 150 characters."""
    return str(username or "").strip().casefold()[:150]


# --- never-block networks ----------------------------------------------------------------
@lru_cache(maxsize=1)
def never_block_networks() -> tuple[IPNetwork, ...]:
    return tuple(parse_networks(tracking_settings.NEVER_BLOCK)[0])


on_reload(never_block_networks.cache_clear)


def _parse(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = normalise_ip(ip) if ip else None
    return ipaddress.ip_address(text) if text else None


def never_blocked(ip: str | None) -> bool:
    addr = _parse(ip)
    return addr is not None and any(
        addr.version == net.version and addr in net for net in never_block_networks()
    )


def normalise_network(value: str) -> str:
    """A block's address as CIDR text (``203.0.113.7/32``); raises BlockError."""
    nets, bad = parse_networks([value])
    if bad or not nets:
        raise BlockError(_("%(value)r is not an IP address or network") % {"value": value})
    return str(nets[0])


# --- the per-process snapshot ------------------------------------------------------------
@dataclass
class _Snapshot:
    loaded: float
    # single addresses -> blocks of scope address / address+account on them
    hosts: dict[str, list[Block]] = field(default_factory=dict)
    # wider networks
    networks: list[tuple[IPNetwork, Block]] = field(default_factory=list)
    # username key -> account and address+account blocks
    accounts: dict[str, list[Block]] = field(default_factory=dict)
    # user id -> account and address+account blocks (blocks made for a user without a name)
    users: dict[str, list[Block]] = field(default_factory=dict)


_lock = threading.Lock()
_snapshot: _Snapshot | None = None


def forget() -> None:
    """Make the next lookup in this process read the blocks again."""
    global _snapshot
    _snapshot = None


on_reload(forget)


def _load() -> _Snapshot:
    now = timezone.now()
    snap = _Snapshot(loaded=time.monotonic())
    active = Block.objects.filter(lifted_at__isnull=True).exclude(expires_at__lte=now)
    for block in active.order_by("created_at", "id"):
        if block.scope in (BlockScope.ACCOUNT, BlockScope.ADDRESS_ACCOUNT):
            if block.username:
                snap.accounts.setdefault(block.username, []).append(block)
            if block.user_id is not None:
                snap.users.setdefault(str(block.user_id), []).append(block)
            if block.scope == BlockScope.ACCOUNT:
                continue
        try:
            net = ipaddress.ip_network(block.address, strict=False)
        except ValueError:
            logger.error("block %s has an invalid address %r; ignored", block.pk, block.address)
            continue
        if block.scope == BlockScope.ADDRESS:
            if net.num_addresses == 1:
                snap.hosts.setdefault(str(net.network_address), []).append(block)
            else:
                snap.networks.append((net, block))
    return snap


def snapshot() -> _Snapshot:
    global _snapshot
    snap = _snapshot
    ttl = float(tracking_settings.BLOCK_CACHE_SECONDS)
    if snap is None or time.monotonic() - snap.loaded >= ttl:
        with _lock:
            snap = _snapshot
            if snap is None or time.monotonic() - snap.loaded >= ttl:
                snap = _snapshot = _load()
    return snap


# --- lookup ------------------------------------------------------------------------------
def _contains(block: Block, addr: Any) -> bool:
    try:
        net = ipaddress.ip_network(block.address, strict=False)
    except ValueError:
        return False
    return addr is not None and addr.version == net.version and addr in net


def known_network(ip: str | None, user_id: Any, username: str) -> bool:
    """Whether the account's profile has learnt the network (/24, /48) of ``ip``."""
    prefix = ip_prefix(normalise_ip(ip)) if ip else ""
    key = profile_store.profile_key(user_id, username)
    if not prefix or not key:
        return False
    profile = profile_store.load_profiles([key]).get(key)
    return profile is not None and profile.entry("ip", prefix) is not None


def find_block(
    ip: str | None, username: str = "", user_id: Any = None, *, now: datetime | None = None
) -> Block | None:
    """The active block refusing this source, or None.

    ``ip`` is the client address (already through the trusted-proxy rule), ``username`` the
    account being tried, ``user_id`` its primary key when known."""
    if never_blocked(ip):
        return None
    now = now or timezone.now()
    snap = snapshot()
    addr = _parse(ip)
    if addr is not None:
        for block in snap.hosts.get(str(addr), ()):
            if block.is_active(now):
                return block
        for net, block in snap.networks:
            if addr.version == net.version and addr in net and block.is_active(now):
                return block
    key = username_key(username)
    candidates = list(snap.accounts.get(key, ())) if key else []
    if user_id is not None:
        candidates += [b for b in snap.users.get(str(user_id), ()) if b not in candidates]
    account_blocks = []
    for block in candidates:
        if not block.is_active(now):
            continue
        if block.scope == BlockScope.ADDRESS_ACCOUNT:
            if _contains(block, addr):
                return block
        else:
            account_blocks.append(block)
    if account_blocks:
        owner = user_id if user_id is not None else account_blocks[0].user_id
        if not known_network(ip, owner, key):
            return account_blocks[0]
    return None


# --- create and lift ---------------------------------------------------------------------
def _send(signal: Any, **kwargs: Any) -> None:
    def run() -> None:
        for receiver, result in signal.send_robust(sender=Block, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "receiver %r of a block signal failed",
                    receiver,
                    exc_info=(type(result), result, result.__traceback__),
                )

    transaction.on_commit(run)


def _changed() -> None:
    # This process sees the change at once; after commit again, in case another thread read
    # the blocks between the write and the commit.
    forget()
    transaction.on_commit(forget)


def _validate(scope: str, address: str, username: str, user_id: Any) -> tuple[str, str]:
    if scope not in SCOPES:
        raise BlockError(
            _("unknown scope %(scope)r (allowed: %(allowed)s)")
            % {"scope": scope, "allowed": ", ".join(SCOPES)}
        )
    network = normalise_network(address) if address else ""
    if scope in (BlockScope.ADDRESS, BlockScope.ADDRESS_ACCOUNT) and not network:
        raise BlockError(_("a %(scope)s block needs an address") % {"scope": scope})
    if scope in (BlockScope.ACCOUNT, BlockScope.ADDRESS_ACCOUNT) and not (
        username or user_id is not None
    ):
        raise BlockError(_("a %(scope)s block needs an account") % {"scope": scope})
    if network:
        net = ipaddress.ip_network(network)
        for safe in never_block_networks():
            if net.version == safe.version and net.overlaps(safe):
                raise BlockError(
                    _("%(network)s overlaps TRACKING_NEVER_BLOCK (%(safe)s)")
                    % {"network": network, "safe": safe}
                )
    return network, username


def create_block(
    scope: str,
    *,
    address: str = "",
    user: Any = None,
    user_id: Any = None,
    username: str = "",
    seconds: float | None = None,
    expires_at: datetime | None = None,
    reason: str,
    source: str = MANUAL,
    activity_id: Any = None,
    by: Any = None,
) -> Block:
    """Store a block (raises BlockError) and announce it after commit (``block_created``).

    ``seconds`` (from now) or ``expires_at`` bound it; neither means until lifted. ``user``
    (or ``user_id``) fills the username when it is not given; ``by`` is the person creating a manual block."""
    if user is not None and not username:
        username = user.get_username()
    username = username_key(username)
    if user is not None:
        user_id = user.pk
    address, username = _validate(scope, address, username, user_id)
    if seconds is not None:
        if seconds <= 0:
            raise BlockError(_("seconds must be positive"))
        expires_at = timezone.now() + timedelta(seconds=seconds)
    block = Block.objects.create(
        scope=scope,
        address=address if scope != BlockScope.ACCOUNT else "",
        user_id=user_id if scope != BlockScope.ADDRESS else None,
        username=username if scope != BlockScope.ADDRESS else "",
        reason=str(reason)[:512],
        source=str(source)[:64],
        activity_id=activity_id,
        created_by=(by.get_username() if by is not None else "")[:150],
        expires_at=expires_at,
    )
    logger.warning(
        "block %s created: %s %s%s until %s by %s (%s)",
        block.pk,
        scope,
        block.address,
        f" {block.username}" if block.username else "",
        expires_at.isoformat() if expires_at else "lifted",
        block.created_by or source,
        block.reason,
    )
    _changed()
    _send(signals.block_created, block=block)
    return block


def lift(block: Block, *, by: Any, reason: str) -> Block:
    """Lift an active or expired block, recording who and why (raises BlockError)."""
    reason = str(reason or "").strip()
    if not reason:
        raise BlockError(_("say why the block is lifted"))
    now = timezone.now()
    who = by.get_username() if by is not None else ""
    with transaction.atomic():
        updated = Block.objects.filter(pk=block.pk, lifted_at__isnull=True).update(
            lifted_at=now, lifted_by=by, lifted_by_username=who[:150], lift_reason=reason
        )
        if not updated:
            raise BlockError(_("this block was already lifted"))
        block.refresh_from_db()
        logger.warning("block %s lifted by %s: %s", block.pk, who or "-", reason)
        _changed()
        _send(signals.block_lifted, block=block, by=by, reason=reason)
    return block


def active_covering(scope: str, address: str, username: str, *, now: datetime) -> bool:
    """Whether an active block of this exact scope and target exists already."""
    qs = Block.objects.filter(scope=scope, lifted_at__isnull=True).exclude(expires_at__lte=now)
    if scope != BlockScope.ACCOUNT:
        qs = qs.filter(address=address)
    if scope != BlockScope.ADDRESS:
        qs = qs.filter(username=username)
    return qs.exists()
