"""Blocks requested by findings, made in the batch step right after detection.

``connect()`` registers ``apply_block_requests`` with ``tracking.pipeline.ingest.after_detection``.
A rule's ``action.block`` or a detector's ``Finding.block`` ends up in the finding's evidence
(``{"scope": ..., "seconds": ...}``); ``apply_block_requests`` turns each request into a
``Block`` of the event's address, account or both. A block lasts ``seconds`` from the event
that requested it, so an import of last month's log blocks nobody today. Requests from
``TRACKING_NEVER_BLOCK`` addresses, for sources already blocked, or missing the address or
account their scope needs are skipped. Runs inside the batch's transaction, in a savepoint
of its own: a failure is logged and never loses the batch (a database outage still spools it).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from tracking.models import Block, BlockScope
from tracking.pipeline import ingest
from tracking.respond import blocks

logger = logging.getLogger("tracking.respond")


def _requests(findings: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    out = []
    for finding in findings:
        evidence = finding.evidence if isinstance(finding.evidence, dict) else {}
        spec = evidence.get("block")
        if spec and not finding.suppressed and isinstance(spec, dict):
            out.append((finding, spec))
    return out


def _target(scope: str, act: Any) -> tuple[str, str] | None:
    """(address, username key) the scope needs from the activity, or None when missing."""
    address = act.ip_address or ""
    username = blocks.username_key(act.username)
    if scope in (BlockScope.ADDRESS, BlockScope.ADDRESS_ACCOUNT) and not address:
        return None
    if scope in (BlockScope.ACCOUNT, BlockScope.ADDRESS_ACCOUNT) and not (
        username or act.user_id is not None
    ):
        return None
    if address:
        address = blocks.normalise_network(address)
    return (
        address if scope != BlockScope.ACCOUNT else "",
        username if scope != BlockScope.ADDRESS else "",
    )


def connect() -> None:
    """Have the batch step apply block requests after each detection (from ``apps.ready``)."""
    ingest.after_detection(apply_block_requests)


def apply_block_requests(findings: list[Any]) -> list[Block]:
    """Create the blocks the batch's findings request (unsaved ``Finding`` rows whose
    ``activity`` is the batch's activity); returns the blocks made."""
    requests = _requests(findings)
    if not requests:
        return []
    try:
        with transaction.atomic():
            return _apply(requests)
    except (OperationalError, InterfaceError):
        raise  # the database is down: the caller spools the batch
    except (DatabaseError, blocks.BlockError, ValueError, TypeError):
        logger.exception("blocks requested by findings could not be made; batch kept")
        return []


def _apply(requests: list[tuple[Any, dict[str, Any]]]) -> list[Block]:
    now = timezone.now()
    made: list[Block] = []
    seen: set[tuple[str, str, str]] = set()
    for finding, spec in requests:
        act = finding.activity
        scope = str(spec.get("scope") or "")
        seconds = spec.get("seconds")
        if scope not in blocks.SCOPES or not isinstance(seconds, int) or seconds < 1:
            logger.error("finding %s requests an invalid block %r", finding.detector, spec)
            continue
        expires_at = act.timestamp + timedelta(seconds=seconds)
        if expires_at <= now or blocks.never_blocked(act.ip_address):
            continue
        target = _target(scope, act)
        if target is None:
            continue
        key = (scope, *target)
        if key in seen or blocks.active_covering(scope, target[0], target[1], now=now):
            continue
        seen.add(key)
        made.append(
            blocks.create_block(
                scope,
                address=target[0],
                username=target[1],
                user_id=act.user_id if scope != BlockScope.ADDRESS else None,
                expires_at=expires_at,
                reason=finding.reason,
                source=finding.detector,
                activity_id=act.id,
            )
        )
    return made
