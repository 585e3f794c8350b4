"""Events into rows: one event becomes one unsaved, enriched and redacted ``Activity``.

``build_activity`` validates an event (``InvalidEvent`` when it can never be a row), clamps
every field to its column, enriches it (IP → geo/ASN, User-Agent → device; pre-filled
``enrichment`` of imports is kept) and redacts headers and parameters again (idempotent).
The outcome is the event's, or the status's where the event says none. ``Users`` resolves
the users of a batch and ``attach_users`` sets them (masking the name a failed attempt claims
for no account); ``merge_verdict`` adds an imported verdict.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import signals
from django.db.models.base import ModelState

from detectors.base import SEVERITY_RANK, max_severity
from tracking.enrich import geo, useragent
from tracking.events import ENRICHMENT_FIELDS, Event, parse_timestamp
from tracking.integrity import macs as integrity
from tracking.models import Activity, Finding
from tracking.outcome import FAILURE, clean, from_status
from tracking.redaction import redact_headers, redact_params

_REVIEW = {"open", "confirmed", "dismissed"}
_CHAR_LIMITS = {
    f.name: f.max_length
    for f in Activity._meta.concrete_fields
    if getattr(f, "max_length", None) and f.get_internal_type() == "CharField"
}


class InvalidEvent(ValueError):
    """An event that can never become a row (reported with the reason)."""


def as_event(item: Event | dict) -> Event:
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
    # The MAC covers the ISO text: store and hash the same UTC form a read gives back.
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InvalidEvent(f"invalid timestamp {value!r}") from exc


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
    kind = pre.get("network_kind")
    # Only the known kinds are stored: the value decides how detection reads the place.
    act.network_kind = kind if kind in geo.NETWORK_KINDS else ""
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
    # Tags the event already carries (a capture-time verdict such as ``breached_password``,
    # an imported record's) are visible to detection; the rest of a verdict is merged after.
    if event.verdict:
        act.tags = _verdict_tags(event.verdict)
    return act


class Users:
    """Resolve ``user_id``/``username`` of a batch with at most two queries.

    ``trust_ids``: live capture, where the id is the request's authenticated user, read from
    the user table during that request. The id is not looked up again; should the user be gone
    by the time the row is written, the foreign key refuses the batch and ``ingest`` resolves
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
                except Exception:  # noqa: S112 - an unknown id is just "no user"
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
        except Exception:
            return None
        return value if value in self.ids else None

    def resolve(self, event: Event) -> Any:
        value = self._by_id(event)
        if value is not None:
            return value
        return self.by_name.get(event.username) if event.username else None


def attach_users(pairs: list[tuple[Event, Activity]], users: Users) -> None:
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


def _verdict_tags(verdict: dict[str, Any]) -> list[str]:
    tags = verdict.get("tags") or []
    if isinstance(tags, str):
        tags = [t for t in tags.replace(";", ",").split(",") if t]
    if not isinstance(tags, list | tuple | set):
        return []
    return sorted({str(t) for t in tags})


def merge_verdict(act: Activity, verdict: dict[str, Any]) -> None:
    if not verdict:
        return
    act.tags = sorted(set(act.tags or []) | set(_verdict_tags(verdict)))
    act.flagged = bool(act.flagged) or bool(verdict.get("flagged"))
    risk = _float(verdict.get("risk_score"))
    if risk is not None:
        act.risk_score = max(float(act.risk_score or 0.0), risk)
    act.severity = max_severity((act.severity or "", verdict.get("severity") or ""))
    status = verdict.get("review_status")
    if status in _REVIEW:
        act.review_status = status


def item_id(item: Any) -> str | None:
    ident = (
        item.id if isinstance(item, Event) else (item.get("id") if isinstance(item, dict) else None)
    )
    return None if ident is None else str(ident)


def imported_findings(act: Activity, verdict: dict[str, Any], have: set[tuple]) -> list[Finding]:
    """Unsaved ``Finding`` rows for the findings an exported record carries
    (``verdict["findings"]``), marked ``{"imported": true}``; ``have`` holds the
    ``(detector, tag)`` pairs the row already has (detection made them again)."""
    rows = []
    for f in verdict.get("findings") or ():
        if not isinstance(f, dict):
            continue
        key = (str(f.get("detector") or "")[:64], str(f.get("tag") or "")[:64])
        if not all(key) or key in have:
            continue
        have.add(key)
        try:
            score = float(f.get("score") or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        rows.append(
            Finding(
                activity=act,
                timestamp=act.timestamp,
                detector=key[0],
                tag=key[1],
                score=score,
                severity=severity
                if SEVERITY_RANK.get(severity := str(f.get("severity") or ""), 0)
                else "low",
                reason=str(f.get("reason") or "")[:512],
                evidence={"imported": True},
                flag=bool(verdict.get("flagged")),
            )
        )
    return rows
