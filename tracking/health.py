"""Health of the recording pipeline: what ``tracking doctor`` prints and ``api/tracking/health/``
serves.

Reports the durable spool (``tracking.pipeline.spool.stats()``), the in-process writer
(``tracking.pipeline.writer.stats()``), the unsealed window (rows waiting for a seal, age of the oldest,
age of the newest seal) and the key configuration. It is *unhealthy* (HTTP 503, exit code 1)
when events may be getting lost or the tamper-evidence promise is not being kept: keys
missing, database unreachable, events stuck in the spool, events dropped, or the unsealed
window larger than ``TRACKING_HEALTH_MAX_UNSEALED_AGE`` / ``..._ROWS``.

Alert channels and forwarders (``tracking.delivery.status``: last delivery, backlog, failures,
dead letters) and signal receivers that raised are reported as warnings: they delay telling,
they never lose a record.
"""

from __future__ import annotations

import hmac
import importlib
import logging
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import Count, Min
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import APIException

from tracking.api.permissions import VIEW_PERMISSION
from tracking.api.throttling import retry_after, throttle_wait
from tracking.conf import tracking_settings
from tracking.delivery import status as delivery_status
from tracking.integrity import anchor as anchors
from tracking.integrity import crypto
from tracking.integrity import macs as integrity
from tracking.models import Activity, Intake, Seal

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.health")

# Seconds a synchronous request's event may wait in the intake before health is alarmed: the
# writer stores it within TRACKING_FLUSH_INTERVAL, a dead process's within the recovery scan
# (10 s grace, every 30 s: tracking.pipeline.intake).
MAX_UNJUDGED_AGE = 120.0


def _optional_stats(module: str) -> dict[str, Any] | None:
    """``<module>.stats()``, or None when that part is not installed or fails."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    stats = getattr(mod, "stats", None)
    if stats is None:
        return None
    try:
        return dict(stats())
    except Exception as exc:  # health must report, never raise
        return {"error": f"{type(exc).__name__}: {exc}"}


def _keys() -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    info: dict[str, Any] = {
        "encryption_keys": len(tracking_settings.ENCRYPTION_KEYS or []),
        "seal_keys": len(tracking_settings.SEAL_KEYS or []),
        "hash_key": "configured" if tracking_settings.HASH_KEY else "derived from the seal key",
        "encryption_key_id": None,
        "seal_key_id": None,
    }
    try:
        info["encryption_key_id"] = crypto.current_key_id()
    except ImproperlyConfigured as exc:
        problems.append(f"encryption keys: {exc}")
    try:
        info["seal_key_id"] = integrity.signing_key()[0]
    except ImproperlyConfigured as exc:
        problems.append(f"seal keys: {exc}")
    for i, key in enumerate(tracking_settings.SEAL_KEYS or []):
        weak = integrity.key_problem(key)
        if weak:
            problems.append(f"seal keys: TRACKING_SEAL_KEYS[{i}] {weak}")
    if tracking_settings.HASH_KEY:
        weak = integrity.key_problem(tracking_settings.HASH_KEY)
        if weak:
            problems.append(f"hash key: TRACKING_HASH_KEY {weak}")
    return info, problems


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 3)


def _sealing(now: datetime, advance_anchor: bool) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    unsealed = Activity.objects.filter(seq__isnull=True)
    count = unsealed.count()
    oldest = unsealed.aggregate(m=Min("timestamp"))["m"] if count else None
    head = Seal.objects.order_by("-last_seq").first()
    # Synchronous requests' events in the intake: committed, activity and verdict owed.
    waiting = Intake.objects.aggregate(n=Count("id"), m=Min("created"))
    unjudged_count, oldest_unjudged = waiting["n"] or 0, waiting["m"]
    info = {
        "unsealed": count,
        "oldest_unsealed_age": _age(now, oldest),
        # Committed by synchronous requests, stored with their verdict within ~0.25 s.
        "unjudged": unjudged_count,
        "oldest_unjudged_age": _age(now, oldest_unjudged),
        "newest_seal_age": _age(now, head.created_at if head else None),
        "sealed_through": head.last_seq if head else 0,
        "chain_head": head.chain_hash if head else "",
        "seal_on_write": bool(tracking_settings.SEAL_ON_WRITE),
        "unsealed_behind_head": anchors.unsealed_behind_head(head).count() if head else 0,
        "anchor": None,
    }
    if info["unsealed_behind_head"]:
        problems.append(
            f"{info['unsealed_behind_head']} activities recorded more than "
            f"{tracking_settings.UNSEALED_BEHIND_HEAD_GRACE} s before the newest seal are "
            "still unsealed: their seal may have been removed (run `tracking verify --anchor`)"
        )
    path = anchors.anchor_path()
    if path is not None:
        if advance_anchor:
            info["anchor"] = anchors.check_and_advance(path)
        else:
            info["anchor"] = _read_only_anchor(anchors, path)
        if info["anchor"]["problem"]:
            problems.append(info["anchor"]["problem"])
    age = info["oldest_unjudged_age"]
    if age is not None and age > MAX_UNJUDGED_AGE:
        problems.append(
            f"{unjudged_count} activities await their verdict, the oldest for {int(age)} s "
            f"(limit {int(MAX_UNJUDGED_AGE)} s) in the intake: no writer thread stores them "
            "(processes recording synchronously store leftovers at start and every 30 s; "
            "`tracking flush` does it now)"
        )
    max_age = tracking_settings.HEALTH_MAX_UNSEALED_AGE
    max_rows = tracking_settings.HEALTH_MAX_UNSEALED_ROWS
    if max_rows is not None and count > max_rows:
        problems.append(f"{count} activities are unsealed (limit {max_rows}): run `tracking seal`")
    age = info["oldest_unsealed_age"]
    if max_age is not None and age is not None and age > max_age:
        problems.append(
            f"the oldest unsealed activity is {int(age)} s old (limit {max_age} s): run "
            "`tracking seal`; rows that stay unsealed failed their MAC (run `tracking verify`)"
        )
    return info, problems


def _read_only_anchor(anchors, path) -> dict[str, Any]:
    """The anchor check without recording a new head (the health endpoint only reads)."""
    info: dict[str, Any] = {"file": str(path), "problem": None, "advanced_to": None}
    try:
        kept = anchors.read_anchor(path)
    except (OSError, ValueError) as exc:
        info["problem"] = f"anchor file: {exc}"
        return info
    if kept is not None:
        info["anchored_seq"], info["anchored_hash"] = kept.last_seq, kept.chain_hash
        info["problem"] = anchors.anchor_problem(kept)
    return info


def _pipeline(now: datetime) -> tuple[dict[str, Any], list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    spool = _optional_stats("tracking.pipeline.spool")
    writer = _optional_stats("tracking.pipeline.writer")
    if spool is not None and "error" not in spool:
        events = int(spool.get("events") or 0)
        oldest = spool.get("oldest")
        age = round(now.timestamp() - float(oldest), 3) if events and oldest else None
        spool["oldest_age"] = age
        limit = tracking_settings.HEALTH_MAX_SPOOL_AGE
        if age is not None and limit is not None and age > limit:
            problems.append(
                f"{events} events have waited {int(age)} s in the spool (limit {limit} s): "
                "the database is unreachable or replay is not running"
            )
        if spool.get("rejected"):
            warnings.append(f"{spool['rejected']} events in the spool's dead-letter file")
        cap = spool.get("max_bytes")
        if spool.get("refused_full"):
            problems.append(
                f"{spool['refused_full']} events were lost because the spool reached "
                f"TRACKING_SPOOL_MAX_BYTES ({cap} bytes); delete full.count in the spool "
                "directory once handled"
            )
        elif cap and int(spool.get("bytes") or 0) >= 0.8 * cap:
            warnings.append(f"the spool holds {spool['bytes']} bytes of its {cap}-byte limit")
    elif spool is not None:
        problems.append(f"spool: {spool['error']}")
    if writer is not None and "error" not in writer:
        if writer.get("dropped"):
            problems.append(f"the writer dropped {writer['dropped']} events")
        if writer.get("failed"):
            warnings.append(f"the writer failed to write {writer['failed']} events (spooled)")
        if writer.get("seal_failures"):
            warnings.append(f"sealing failed {writer['seal_failures']} times (retried)")
    elif writer is not None:
        problems.append(f"writer: {writer['error']}")
    return {"spool": spool, "writer": writer}, problems, warnings


def collect(now: datetime | None = None, *, advance_anchor: bool = False) -> dict[str, Any]:
    """Everything ``tracking doctor`` and the health endpoint report (JSON-safe).

    ``advance_anchor`` (``tracking doctor``): record the current chain head in
    ``TRACKING_ANCHOR_FILE`` once the head recorded there is found in the chain.
    """
    now = now or datetime.now(UTC)
    problems: list[str] = []
    keys, key_problems = _keys()
    problems += key_problems
    pipeline, pipe_problems, warnings = _pipeline(now)
    problems += pipe_problems
    try:
        # Alert channels and forwarders: their troubles are warnings (nothing recorded is lost).
        delivery, delivery_warnings = delivery_status.health()
        warnings += delivery_warnings
    except DatabaseError as exc:
        delivery = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        sealing, seal_problems = _sealing(now, advance_anchor)
        problems += seal_problems
        database = "ok"
    except DatabaseError as exc:
        logger.warning("health: database unavailable: %s", exc)
        sealing, database = None, f"unavailable: {type(exc).__name__}"
        problems.append("the database is unavailable (events go to the spool)")
    spool, writer = pipeline["spool"] or {}, pipeline["writer"] or {}
    return {
        "status": "unhealthy" if problems else "ok",
        "healthy": not problems,
        "checked_at": now.isoformat(),
        "problems": problems,
        "warnings": warnings,
        "database": database,
        # The headline numbers, flat, for monitoring systems that read one level only.
        "spool_size": spool.get("events"),
        "spool_oldest_age": spool.get("oldest_age"),
        "queue_depth": writer.get("queue_depth"),
        "failed": writer.get("failed"),
        "dropped": writer.get("dropped"),
        "unsealed": sealing["unsealed"] if sealing else None,
        "unjudged": sealing["unjudged"] if sealing else None,
        "oldest_unsealed_age": sealing["oldest_unsealed_age"] if sealing else None,
        "newest_seal_age": sealing["newest_seal_age"] if sealing else None,
        "keys_configured": not key_problems,
        "dead_letters": delivery.get("dead_letters"),
        **pipeline,
        "delivery": delivery,
        "sealing": sealing,
        "keys": keys,
    }


def _token_ok(request) -> bool:
    expected = tracking_settings.HEALTH_TOKEN
    if not expected:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), str(expected).encode())


def _allowed(user) -> bool:
    # The health report shows the chain head and pipeline state: the log's readers only.
    return bool(user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION))


def _staff(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return _allowed(user)
    try:  # DRF token users, when the API's token authentication is installed
        found = TokenAuthentication().authenticate(request)
    except APIException:
        return False
    except Exception:  # e.g. authtoken not installed: no token users
        return False
    return bool(found and _allowed(found[0]))


@never_cache
def health_view(request):
    """JSON health for staff with ``tracking.view_activity`` or a monitoring token; 503 when
    unhealthy; throttled like the API (429)."""
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"detail": _("Method not allowed.")}, status=405)
    # Every caller, refused ones too, before any check.
    wait = throttle_wait(request)
    if wait is not None:
        response = JsonResponse({"detail": _("Request was throttled.")}, status=429)
        response["Retry-After"] = retry_after(wait)
        return response
    if not (_token_ok(request) or _staff(request)):
        authenticated = getattr(getattr(request, "user", None), "is_authenticated", False)
        status = 403 if authenticated else 401
        return JsonResponse({"detail": _("Staff or a health token is required.")}, status=status)
    data = collect()
    return JsonResponse(data, status=200 if data["healthy"] else 503)
