"""The one batch step every stored activity goes through (see docs/ARCHITECTURE.md).

``ingest(events)``:

1. drops ids already stored (imports re-run, at-least-once delivery) and repeats in the batch;
2. enriches: IP → geo/ASN, User-Agent → device (pre-filled ``enrichment`` of imports is kept);
3. redacts headers/params again (idempotent) and clamps every field to its column;
4. sorts by timestamp and builds unsaved ``Activity`` objects, resolving users (live events
   trust the request's user id; see ``_Users``);
5. runs detection, merges imported verdicts;
6. computes each row MAC, bulk-inserts activities and findings and updates ``Rollup`` rows in
   one transaction;
7. seals after commit when ``TRACKING_SEAL_ON_WRITE``.

Failure isolation: an event that cannot be turned into a row (bad id, bad timestamp...) is
*rejected*: logged, counted and kept in the spool's dead-letter file. If the batch insert
fails, every event is retried alone so one bad row never loses the others. When the database
itself is unavailable, events are appended to the durable spool (``spool_failures=True``) or
``DatabaseUnavailable`` is raised for the caller to keep them (spool replay, Celery retry).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import signals
from django.db.models.base import ModelState

from tracking.compat import parse_iso_datetime
from tracking.conf import tracking_settings
from tracking.delivery import hooks as delivery
from tracking.enrich import geo, useragent
from tracking.events import ENRICHMENT_FIELDS, Event
from tracking.integrity import macs as integrity
from tracking.integrity import sealing
from tracking.models import Activity, Severity
from tracking.outcome import FAILURE, clean, from_status
from tracking.redaction import redact_headers, redact_params
from tracking.respond.actions import apply_block_requests
from tracking.storage import copyinsert, rollups

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.ingest")

_SEVERITIES = {value for value, _ in Severity.choices}
_SEV_RANK = {"": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_REVIEW = {"open", "confirmed", "dismissed"}
_CHAR_LIMITS = {
    f.name: f.max_length
    for f in Activity._meta.concrete_fields
    if getattr(f, "max_length", None) and f.get_internal_type() == "CharField"
}


class DatabaseUnavailable(Exception):
    """The database could not be reached; the events were not stored (nor lost)."""


class InvalidEvent(ValueError):
    """An event that can never become a row (reported with the reason)."""


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    failed: int = 0  # rejected (invalid) + spooled (database unavailable)
    ids: list[str] = field(default_factory=list)
    rejected: int = 0
    spooled: int = 0
    errors: list[str] = field(default_factory=list)
    rejected_ids: list[str] = field(default_factory=list)

    def add(self, other: IngestResult) -> IngestResult:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.failed += other.failed
        self.rejected += other.rejected
        self.spooled += other.spooled
        self.ids.extend(other.ids)
        self.errors.extend(other.errors[:100])
        return self


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) and not isinstance(
        exc, IntegrityError
    )


def _as_event(item: Event | dict) -> Event:
    if isinstance(item, Event):
        return item
    if isinstance(item, dict):
        try:
            return Event.from_dict(item)
        except (TypeError, ValueError) as exc:
            raise InvalidEvent(f"not an event: {exc}") from exc
    raise InvalidEvent(f"not an event: {type(item).__name__}")


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidEvent(f"invalid id {value!r}") from exc


def _ip(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return _normal_ip(str(value).strip())


@lru_cache(maxsize=8192)
def _normal_ip(text: str) -> str | None:
    # Parsing is ~10 µs and the same clients come back: cached by their text.
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any, lo: int, hi: int) -> int | None:
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        i = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return i if lo <= i <= hi else None


def _text(name: str, value: Any) -> str:
    # PostgreSQL text cannot hold NUL; it is never meaningful in these columns.
    text = "" if value is None else str(value).replace("\x00", "")
    limit = _CHAR_LIMITS.get(name)
    return text[:limit] if limit else text


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = parse_iso_datetime(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidEvent(f"invalid timestamp {value!r}") from exc
    if not isinstance(value, datetime):
        raise InvalidEvent(f"invalid timestamp {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # The MAC covers the ISO text: store and hash the same UTC form a read gives back.
    return value.astimezone(UTC)


def _enrich(event: Event, act: Activity) -> None:
    pre = {k: v for k, v in (event.enrichment or {}).items() if k in ENRICHMENT_FIELDS}
    geo_known = any(pre.get(k) not in (None, "") for k in geo.GEO_FIELDS)
    if not geo_known and act.ip_address:
        result = geo.lookup(act.ip_address)
        pre.update(result.values)
        act.geo_pending = result.pending
    if not any(pre.get(k) not in (None, "") for k in ("device", "os", "browser")):
        pre.update(useragent.parse_user_agent(act.user_agent))
    for key in ("isp", "country", "region", "city", "device", "os", "browser"):
        if key in pre:
            setattr(act, key, _text(key, pre[key]))
    act.country = act.country.upper()[:2]
    act.asn = _int(pre.get("asn"), 0, 2**63 - 1)
    act.latitude = _float(pre.get("latitude"))
    act.longitude = _float(pre.get("longitude"))
    act.accuracy_radius = _int(pre.get("accuracy_radius"), 0, 2**31 - 1)
    act.is_mobile = bool(pre.get("is_mobile", False))
    act.is_bot = bool(pre.get("is_bot", False))


_FRESH = {"tags": list, "headers": dict, "params": dict}
_DEFAULTS: tuple[dict[str, Any], frozenset[str]] | None = None


def _defaults() -> tuple[dict[str, Any], frozenset[str]]:
    """Constant defaults by attribute name, and the fields whose default is computed."""
    global _DEFAULTS
    if _DEFAULTS is None:
        constant: dict[str, Any] = {}
        computed = []
        for f in Activity._meta.concrete_fields:
            if f.attname in _FRESH:
                continue
            if f.has_default() and callable(f.default):
                computed.append(f.attname)
            else:
                constant[f.attname] = f.get_default()
        _DEFAULTS = (constant, frozenset(computed))
    return _DEFAULTS


def _new_activity(**values: Any) -> Activity:
    """``Activity(**values)`` without ``Model.__init__``'s per-field walk (a quarter of
    building a row): every concrete field's attribute set, fresh containers for the mutable
    defaults, a new ``ModelState``. The constructor is used whenever the shortcut could
    differ: a computed default (id, timestamp) not given, or listeners of the model's init
    signals, which the shortcut would not send."""
    constant, computed = _defaults()
    if (
        not computed <= values.keys()
        or signals.pre_init.has_listeners(Activity)
        or signals.post_init.has_listeners(Activity)
    ):
        return Activity(**values)
    obj = Activity.__new__(Activity)
    state = obj.__dict__
    state.update(constant)
    for name, make in _FRESH.items():
        state[name] = make()
    state.update(values)
    obj._state = ModelState()
    return obj


def build_activity(event: Event) -> Activity:
    """An unsaved, enriched and redacted Activity for ``event`` (raises InvalidEvent)."""
    if not event.type or not isinstance(event.type, str):
        raise InvalidEvent("missing activity type")
    headers = event.headers if isinstance(event.headers, dict) else {}
    params = event.params if isinstance(event.params, dict) else {"value": event.params}
    act = _new_activity(
        id=_uuid(event.id),
        timestamp=_timestamp(event.timestamp),
        type=_text("type", event.type),
        username=_text("username", event.username),
        session_id=_text("session_id", event.session_id),
        ip_address=_ip(event.ip_address),
        remote_addr=_ip(event.remote_addr),
        forwarded_for=_text("forwarded_for", event.forwarded_for),
        user_agent=useragent.truncate_user_agent(_text("user_agent", event.user_agent)),
        endpoint=_text("endpoint", event.endpoint),
        method=_text("method", event.method).upper(),
        status=_int(event.status, 0, 32767),
        duration=_float(event.duration),
        headers=redact_headers(headers),
        params=redact_params(params),
        outcome=event.outcome if event.outcome in ("success", "failure") else "",
    )
    try:
        # Nothing said otherwise: the status decides (>= 400 is a failure).
        act.outcome = clean(event.outcome) or from_status(act.status)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from exc
    act.user_id = None
    _enrich(event, act)
    return act


class _Users:
    """Resolve ``user_id``/``username`` of a batch with at most two queries.

    ``trust_ids``: live capture, where the id is the request's authenticated user, read from
    the user table during that request. The id is not looked up again; should the user be gone
    by the time the row is written, the foreign key refuses the batch and ``_ingest`` resolves
    its users against the table before writing it again (the row is then kept without a user).
    """

    def __init__(self, events: list[Event], *, trust_ids: bool = False) -> None:
        model = get_user_model()
        pk = model._meta.pk
        ids = set()
        for e in events:
            if e.user_id not in (None, ""):
                try:
                    ids.add(pk.to_python(e.user_id))
                except Exception:  # noqa: BLE001, S112 - an unknown id is just "no user"
                    continue
        field = model.USERNAME_FIELD
        self.pk = pk
        self.trusted = trust_ids and bool(ids)
        if trust_ids or not ids:
            self.ids = ids
        else:
            self.ids = set(model._default_manager.filter(pk__in=ids).values_list("pk", flat=True))
        # Names are only looked up for events whose user id did not resolve: a request by a
        # logged-in user costs no user query when live, one when imported, never two.
        names = {e.username for e in events if e.username and self._by_id(e) is None}
        self.by_name = (
            dict(model._default_manager.filter(**{f"{field}__in": names}).values_list(field, "pk"))
            if names
            else {}
        )

    def _by_id(self, event: Event) -> Any:
        if event.user_id in (None, ""):
            return None
        try:
            value = self.pk.to_python(event.user_id)
        except Exception:  # noqa: BLE001
            return None
        return value if value in self.ids else None

    def resolve(self, event: Event) -> Any:
        value = self._by_id(event)
        if value is not None:
            return value
        return self.by_name.get(event.username) if event.username else None


def _attach_users(pairs: list[tuple[Event, Activity]], users: _Users) -> None:
    """Set each row's user; a failed attempt naming no account keeps only a masked name."""
    for event, act in pairs:
        act.user_id = users.resolve(event)
        if act.user_id is None and act.outcome == FAILURE and act.username:
            _mask_claimed_name(act)


def _mask_claimed_name(act: Activity) -> None:
    """A name that matches no account may be a typo or a password typed into the username
    field: it is stored as a keyed hash (``integrity.mask_username``), in the row and wherever
    the request's parameters repeat it."""
    raw = act.username
    masked = integrity.mask_username(raw)
    if masked == raw:
        return
    act.username = masked
    act.params = _replace_text(act.params, raw, masked)


def _replace_text(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value.strip() == old else value
    if isinstance(value, dict):
        return {k: _replace_text(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_text(v, old, new) for v in value]
    return value


def _merge_verdict(act: Activity, verdict: dict[str, Any]) -> None:
    if not verdict:
        return
    tags: Any = verdict.get("tags") or []
    if isinstance(tags, str):
        tags = [t for t in tags.replace(";", ",").split(",") if t]
    act.tags = sorted(set(act.tags or []) | {str(t) for t in tags})
    act.flagged = bool(act.flagged) or bool(verdict.get("flagged"))
    risk = _float(verdict.get("risk_score"))
    if risk is not None:
        act.risk_score = max(float(act.risk_score or 0.0), risk)
    sev = verdict.get("severity") or ""
    if sev in _SEVERITIES and _SEV_RANK[sev] > _SEV_RANK.get(act.severity or "", 0):
        act.severity = sev
    status = verdict.get("review_status")
    if status in _REVIEW:
        act.review_status = status


class _DetectionFailed(Exception):
    """Detection raised inside the batch's transaction, which may no longer be usable."""


# What detection sets on an activity (``runner.apply_verdict``): put back when a failed
# detection's batch is written again without it.
_VERDICT_FIELDS = ("tags", "risk_score", "severity", "flagged", "review_status")


def _detect(acts: list[Activity]) -> list:
    from tracking.detection.runner import detect_batch

    try:
        return list(detect_batch(acts) or [])
    except Exception as exc:  # noqa: BLE001 - a detector bug must not lose the audit log
        if isinstance(exc, DatabaseError) and _unavailable(exc):
            raise  # the database is down: the caller spools the batch
        raise _DetectionFailed from exc


def _insert(pairs: list[tuple[Event, Activity]]) -> None:
    """Detect, then write the batch in one transaction. Detection used to run in a savepoint
    of its own (two more round trips per batch, a third of a synchronous request's); when it
    fails the whole transaction is rolled back and the batch written again without it."""
    acts = [a for _, a in pairs]
    before = [tuple(getattr(a, f) for f in _VERDICT_FIELDS) for a in acts]
    try:
        try:
            _write(pairs, detect=True)
        except _DetectionFailed as exc:
            logger.error(
                "detection failed for a batch; stored without findings", exc_info=exc.__cause__
            )
            _restore_verdicts(acts, before)
            _write(pairs, detect=False)
    except BaseException:
        # Nothing was stored: a batch written again (one by one, or after its users were
        # resolved) is judged afresh, not on top of the verdicts of the rolled-back attempt.
        _restore_verdicts(acts, before)
        raise


def _restore_verdicts(acts: list[Activity], before: list[tuple]) -> None:
    for act, values in zip(acts, before, strict=True):
        for name, value in zip(_VERDICT_FIELDS, values, strict=True):
            setattr(act, name, list(value) if isinstance(value, list) else value)


def _write(pairs: list[tuple[Event, Activity]], *, detect: bool) -> None:
    from tracking.models import Finding

    acts = [a for _, a in pairs]
    with transaction.atomic():
        findings = _detect(acts) if detect else []
        apply_block_requests(findings)
        leaves = []
        for event, act in pairs:
            _merge_verdict(act, event.verdict or {})
            if act.severity not in _SEVERITIES:
                act.severity = ""
            act.mac, leaf = integrity.mac_and_leaf(act)
            leaves.append((act.id, act.mac, leaf))
        with _pipelined(len(acts)):
            # COPY on PostgreSQL for writer-sized batches (see tracking.storage.copyinsert).
            copyinsert.insert(Activity, acts)
            copyinsert.insert(Finding, findings)
            rollups.apply(acts)
        # The batch's outbox entry (alerts, forwarders) commits with it; signals after commit.
        delivery.batch_written(acts, findings)
        if tracking_settings.SEAL_ON_WRITE:
            # This process seals what it wrote: its sealer uses these leaves instead of
            # reading the rows back (see sealing._WrittenLeaves).
            sealing.written.add(leaves)


@contextmanager
def _pipelined(rows: int) -> Iterator[None]:
    """On PostgreSQL, send a small batch's INSERTs and rollup upserts together (psycopg's
    pipeline mode): a synchronous request's writes cost one round trip instead of three.
    Not for batches COPY writes (COPY cannot run in a pipeline). Errors surface when the
    pipeline syncs, converted to Django's exceptions as if raised by the statement."""
    conn = transaction.get_connection()
    if conn.vendor != "postgresql" or rows >= copyinsert.MIN_ROWS:
        yield
        return
    conn.ensure_connection()
    raw = conn.connection
    if not hasattr(raw, "pipeline"):  # psycopg2
        yield
        return
    with conn.wrap_database_errors, raw.pipeline():
        yield


def _drop_existing(
    pairs: list[tuple[Event, Activity]], result: IngestResult
) -> list[tuple[Event, Activity]]:
    existing = _existing([a.id for _, a in pairs])
    if not existing:
        return pairs
    result.duplicates += sum(1 for _, a in pairs if a.id in existing)
    return [(e, a) for e, a in pairs if a.id not in existing]


def _existing(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for i in range(0, len(ids), 500):
        found.update(Activity.objects.filter(id__in=ids[i : i + 500]).values_list("id", flat=True))
    return found


def _seal_after_commit(rows: int) -> None:
    if not tracking_settings.SEAL_ON_WRITE:
        return

    def run() -> None:
        from tracking.integrity.sealing import seal_pending

        if float(tracking_settings.SEAL_INTERVAL or 0) > 0:
            # Sealing re-reads and re-hashes every new row and takes the chain lock: done per
            # request it was +12 queries and ~40 ms. The writer thread seals at most every
            # SEAL_INTERVAL seconds instead (SECURITY.md, "the unsealed window").
            from tracking.pipeline.writer import seal_soon

            seal_soon(rows)
            return
        try:
            seal_pending()
        except Exception:  # noqa: BLE001 - sealing catches up on the next write or `tracking seal`
            logger.exception("sealing after write failed")

    transaction.on_commit(run)


def _reject(result: IngestResult, item: Any, reason: str) -> None:
    from tracking.pipeline import spool

    result.failed += 1
    result.rejected += 1
    result.errors.append(reason)
    ident = _item_id(item)
    if ident:
        result.rejected_ids.append(ident)
    logger.error("tracking event rejected: %s", reason)
    try:
        spool.reject(item, reason)
    except Exception:  # noqa: BLE001
        logger.exception("could not keep a rejected event in the dead-letter file")


def ingest(
    events: Iterable[Event | dict],
    *,
    source: str = "live",
    spool_failures: bool = True,
    assume_new: bool = False,
) -> IngestResult:
    """Store a batch of events; see the module docstring. Idempotent on event ids.

    ``assume_new=True`` (live capture: the request path and the writer's queue) skips the
    lookup of already stored ids; a duplicate then costs a failed insert and the lookup."""
    from tracking.gcpause import gc_paused

    # Enrichment, detection and row building allocate many short-lived containers; cyclic
    # collections they would trigger walk the whole heap (see ``gc_paused``).
    with gc_paused():
        return _ingest(events, source=source, spool_failures=spool_failures, assume_new=assume_new)


def _ingest(
    events: Iterable[Event | dict], *, source: str, spool_failures: bool, assume_new: bool
) -> IngestResult:
    from tracking.pipeline import spool

    result = IngestResult()
    items = list(events)
    if not items:
        return result
    try:
        seen: set[uuid.UUID] = set()
        pairs: list[tuple[Event, Activity]] = []
        for item in items:
            try:
                event = _as_event(item)
                act = build_activity(event)
            except InvalidEvent as exc:
                _reject(result, item.to_dict() if isinstance(item, Event) else item, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one odd event never loses the batch
                _reject(
                    result,
                    item.to_dict() if isinstance(item, Event) else item,
                    f"{type(exc).__name__}: {exc}",
                )
                continue
            if act.id in seen:
                result.duplicates += 1
                continue
            seen.add(act.id)
            pairs.append((event, act))
        if not pairs:
            return result
        # Live events carry ids made for them (uuid4) that were never offered before: the
        # lookup is skipped (one query per batch). Should an id exist after all, the insert
        # fails as a whole and the batch takes the idempotent path below.
        if not assume_new:
            pairs = _drop_existing(pairs, result)
        pairs.sort(key=lambda p: p[1].timestamp)
        users = _Users([e for e, _ in pairs], trust_ids=assume_new)
        _attach_users(pairs, users)
        try:
            _insert(pairs)
        except Exception as exc:  # noqa: BLE001 - isolate the bad event below
            if _unavailable(exc):
                raise
            _after_failed_batch(pairs, users, exc, result, assume_new=assume_new)
        else:
            result.stored += len(pairs)
            result.ids.extend(str(a.id) for _, a in pairs)
        if result.stored:
            _seal_after_commit(result.stored)
    except DatabaseError as exc:
        if not _unavailable(exc):
            raise
        done = set(result.ids) | set(result.rejected_ids)
        pending = [i for i in items if _item_id(i) not in done]
        if not spool_failures:
            raise DatabaseUnavailable(str(exc)) from exc
        logger.error("database unavailable, %d tracking events spooled: %s", len(pending), exc)
        spool.append(pending)
        result.failed += len(pending)
        result.spooled += len(pending)
        _close_connection()
    logger.debug("ingest(%s): %s", source, result)
    return result


def _after_failed_batch(
    pairs: list[tuple[Event, Activity]],
    users: _Users,
    exc: Exception,
    result: IngestResult,
    *,
    assume_new: bool,
) -> None:
    """A batch's write failed and nothing of it was stored. A live batch may hold an id that
    was stored already or a trusted user id whose user is gone (both refused by a constraint):
    drop the one, resolve the other against the table and write the batch once more. What
    still fails is written event by event, so one bad event only loses itself."""
    if assume_new and isinstance(exc, IntegrityError):
        pairs = _drop_existing(pairs, result)
    if users.trusted:
        users = _Users([e for e, _ in pairs])
        _attach_users(pairs, users)
        if isinstance(exc, IntegrityError):
            try:
                _insert(pairs)
            except Exception as again:  # noqa: BLE001
                if _unavailable(again):
                    raise
                exc = again
            else:
                result.stored += len(pairs)
                result.ids.extend(str(a.id) for _, a in pairs)
                return
    logger.warning("batch insert failed (%s); retrying events one by one", exc)
    _one_by_one(pairs, result)


def _item_id(item: Any) -> str | None:
    ident = (
        item.id if isinstance(item, Event) else (item.get("id") if isinstance(item, dict) else None)
    )
    return None if ident is None else str(ident)


def _one_by_one(pairs: list[tuple[Event, Activity]], result: IngestResult) -> None:
    for event, act in pairs:
        try:
            _insert([(event, act)])
        except Exception as exc:  # noqa: BLE001
            if _unavailable(exc):
                raise
            _reject(result, event.to_dict(), f"{type(exc).__name__}: {exc}")
            continue
        result.stored += 1
        result.ids.append(str(act.id))


def _close_connection() -> None:
    from django.db import connection

    try:
        if not connection.in_atomic_block:
            connection.close()
    except Exception:  # noqa: BLE001
        logger.debug("closing a broken connection failed", exc_info=True)
