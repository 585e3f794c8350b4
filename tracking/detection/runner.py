"""Glue between the writer and the detection engine in ``detectors/``.

``detect_batch(activities)`` receives unsaved, enriched and redacted ``Activity`` instances of
one batch, in timestamp order, inside the writer's transaction. Per batch it makes a handful of
queries, whatever the batch size:

1. the profiles of every user in the batch (one ``IN`` query) and the population counters the
   risk score needs (one query);
2. per group of threshold rules sharing pre-filters, the stored rows of their look-back window
   ``[first event - timespan, last event]`` (only the needed columns);
3. the latest trained-model version (one small query; the model is reloaded only when it changes).

It then walks the batch in timestamp order: derives context (novelty, rates, local hour) from
the profile *before* the event, asks every detector and rule, and lets the event teach the
profile when it succeeded and was not flagged (so an attacker's network never becomes "known"
by itself; a reviewer's dismissal teaches it, see ``on_review``). Batched detectors
(IsolationForest) score all rows at the end with one call. Profiles and counters are written
back in bulk. Everything is judged by the events' own timestamps.

Verdict: tags = union of the non-suppressed findings' tags; ``risk_score`` = the combination of
their scores (``TRACKING_RISK_COMBINE``: ``max`` by default, or ``noisy_or`` = 1 - Π(1 - s));
``severity`` = the highest; ``flagged`` when a finding says flag (impossible travel, a flagging
rule) or the risk score reaches ``TRACKING_FLAG_THRESHOLD``; flagged activities open for review.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from django.db import models as dj_models

from detectors.base import SEVERITY_RANK, Context, Detector, Observation, max_severity
from detectors.base import Finding as DetectorFinding
from detectors.features import context_features
from detectors.population import NAMESPACE, Population
from detectors.profile import UserProfile
from detectors.registry import build_all
from detectors.rules import Rule, RuleEngine, load_rules
from detectors.rules.rule import Threshold
from tracking.conf import on_reload, tracking_settings
from tracking.detection import profiles as store
from tracking.models import Activity, Finding, ReviewStatus

logger = logging.getLogger("tracking.detection")

# Risk from which an unflagged event still teaches networks and devices but not its position.
SUSPICIOUS = 0.5


def builtin_rule_dir() -> Path:
    import detectors.rulepack as rulepack

    return Path(rulepack.__file__).resolve().parent


def rule_dirs() -> list[str]:
    dirs = [str(builtin_rule_dir())] if tracking_settings.BUILTIN_RULES else []
    dirs.extend(str(d) for d in tracking_settings.RULE_DIRS or [])
    return dirs


def configured_detectors() -> list[Detector]:
    """Build the detectors of ``TRACKING_DETECTORS`` (raises ``detectors.ConfigError``)."""
    detectors = build_all(tracking_settings.DETECTORS)
    hosting = list(tracking_settings.HOSTING_ASNS or [])
    mobile = list(tracking_settings.MOBILE_ASNS or [])
    for d in detectors:
        if (hosting or mobile) and hasattr(d, "hosting_asns") and hasattr(d, "mobile_asns"):
            d.set_params(
                hosting_asns=tuple(d.hosting_asns) + tuple(hosting),
                mobile_asns=tuple(d.mobile_asns) + tuple(mobile),
            )
            d.fit()
    return detectors


@dataclass
class Pipeline:
    detectors: list[Detector]
    rules: list[Rule]
    # trained-model versions currently installed, by detector name
    versions: dict[str, int | None]

    @property
    def plain(self) -> list[Detector]:
        return [d for d in self.detectors if not d.batched]

    @property
    def batched(self) -> list[Detector]:
        return [d for d in self.detectors if d.batched]


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    """The configured detectors and rules, built once (cleared when a setting changes)."""
    return Pipeline(detectors=configured_detectors(), rules=load_rules(rule_dirs()), versions={})


on_reload(pipeline.cache_clear)


def observation(act: Activity, *, with_params: bool = True) -> Observation:
    params: Any = {}
    if with_params:
        try:
            params = act.params if isinstance(act.params, dict) else {}
        except Exception:  # noqa: BLE001 - an undecryptable row still gets judged on the rest
            params = {}
    return Observation(
        timestamp=act.timestamp,
        type=act.type or "",
        id=str(act.id),
        user_key=store.profile_key(act.user_id, act.username),
        username=act.username or "",
        session_id=act.session_id or "",
        ip_address=act.ip_address,
        isp=act.isp or "",
        asn=act.asn,
        country=act.country or "",
        region=act.region or "",
        city=act.city or "",
        latitude=act.latitude,
        longitude=act.longitude,
        accuracy_radius=act.accuracy_radius,
        device=act.device or "",
        os=act.os or "",
        browser=act.browser or "",
        is_mobile=bool(act.is_mobile),
        is_bot=bool(act.is_bot),
        user_agent=act.user_agent or "",
        endpoint=act.endpoint or "",
        method=(act.method or "").upper(),
        status=act.status,
        duration=act.duration,
        params=params,
    )


# --- models ----------------------------------------------------------------------------
# Seconds a process trusts the latest model version it read. ``latest_version`` is a query
# per batch (about 7 ms of a synchronous one-event write); a model trained by another process
# (``tracking train``) is picked up within this many seconds, one trained in this process at
# once (``modelstore.save_model`` calls ``forget_model_versions``).
MODEL_CHECK_INTERVAL = 5.0
_model_versions: dict[str, tuple[float, int | None]] = {}


def forget_model_versions() -> None:
    """Make the next batch read the latest model versions from the database."""
    _model_versions.clear()


on_reload(forget_model_versions)


def _latest_version(name: str) -> int | None:
    from tracking.detection import modelstore

    now = time.monotonic()
    cached = _model_versions.get(name)
    if cached is not None and now - cached[0] < MODEL_CHECK_INTERVAL:
        return cached[1]
    version = modelstore.latest_version(name)
    _model_versions[name] = (now, version)
    return version


def refresh_models(pipe: Pipeline) -> None:
    """Install the latest stored model of each trainable detector (verified, or none)."""
    from tracking.detection import modelstore

    for det in pipe.detectors:
        if not hasattr(det, "set_state"):
            continue
        det = cast(Any, det)  # a trainable detector: set_state() and clear_state()
        name = getattr(det, "model_name", det.name)
        version = _latest_version(name)
        if pipe.versions.get(det.name, -1) == version:
            continue
        pipe.versions[det.name] = version
        if version is None:
            det.clear_state()
            continue
        try:
            model, meta, version = modelstore.load_model(name, version)
            det.set_state(model, meta)
        except Exception as exc:  # noqa: BLE001 - a refused model keeps the detector silent
            det.clear_state()
            logger.error("detector %s: stored model not used: %s", det.name, exc)


# --- threshold look-back ---------------------------------------------------------------
def _apply_prefilter(
    qs: dj_models.QuerySet, field: str, op: str, values: tuple
) -> dj_models.QuerySet:
    if op == "in":
        return qs.filter(**{f"{field}__in": list(values)})
    # numeric comparison: a row matches if it passes any of the bounds
    q = dj_models.Q()
    for v in values:
        q |= dj_models.Q(**{f"{field}__{op}": v})
    return qs.filter(q)


def _may_pass(act: Activity, prefilters: tuple) -> bool:
    """Could ``act`` pass these SQL pre-filters? Errs towards yes (case-insensitive text,
    unknown values pass): a no must mean no rule of the group can match the event."""
    for field, op, values in prefilters:
        value = getattr(act, field, None)
        if value is None:
            continue
        if op == "in":
            if isinstance(value, str):
                if value.lower() not in {str(v).lower() for v in values}:
                    return False
            elif value not in values:
                return False
            continue
        try:
            if not any(_COMPARE[op](value, v) for v in values):
                return False
        except (TypeError, KeyError):
            continue
    return True


_COMPARE = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


_ACTIVITY_COLUMNS: frozenset[str] | None = None


def _columns(names: tuple[str, ...]) -> bool:
    """Whether every name is a stored Activity column (not ``params.x`` or ``ctx.x``)."""
    global _ACTIVITY_COLUMNS
    if _ACTIVITY_COLUMNS is None:
        _ACTIVITY_COLUMNS = frozenset(f.name for f in Activity._meta.concrete_fields)
    return bool(names) and all(n in _ACTIVITY_COLUMNS for n in names)


def _spec(rule: Rule) -> Threshold:
    """The threshold of a rule known to have one."""
    assert rule.threshold is not None
    return rule.threshold


def _in_groups(rules: list[Rule], acts: list[Activity]) -> dj_models.Q:
    """Rows sharing every group-by column's value with an event of ``acts`` that can reach
    one of ``rules`` (per column a set of values: a superset of the exact groups, which the
    windows then separate)."""
    cond = dj_models.Q(pk__in=[])
    for by in {tuple(_spec(r).group_by) for r in rules}:
        reaching = [
            a for a in acts if any(_reaches(r, a) for r in rules if _spec(r).group_by == by)
        ]
        if not reaching:
            continue
        match = dj_models.Q()
        for name in by:
            values = {getattr(a, name, None) for a in reaching}
            column = dj_models.Q(**{f"{name}__in": sorted(v for v in values if v is not None)})
            if None in values:
                column |= dj_models.Q(**{f"{name}__isnull": True})
            match &= column
        cond |= match
    return cond


def _reaches(rule: Rule, act: Activity) -> bool:
    if rule.types is not None and (act.type or "").upper() not in rule.types:
        return False
    return _may_pass(act, rule.prefilters)


def _relevant(rule: Rule, acts: list[Activity]) -> bool:
    """Whether any event of the batch can reach this threshold rule: the engine only feeds a
    rule's window with events of its types that match it, and a rule that no event of the
    batch reaches never reads its look-back (so a batch of API calls costs no AUTH query)."""
    return any(_reaches(rule, a) for a in acts)


def threshold_history(rules: list[Rule], acts: list[Activity]) -> dict[str, list[dict[str, Any]]]:
    """Stored rows each threshold rule needs, one query per group of rules sharing pre-filters
    (only for rules some event of the batch can reach)."""
    thresholded = [r for r in rules if r.threshold is not None]
    if not thresholded or not acts:
        return {}
    thresholded = [r for r in thresholded if _relevant(r, acts)]
    if not thresholded:
        return {}
    from datetime import timedelta

    first = min(a.timestamp for a in acts)
    last = max(a.timestamp for a in acts)
    groups: dict[tuple, list[Rule]] = {}
    for r in thresholded:
        groups.setdefault(tuple(sorted(r.prefilters)), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for prefilters, group in groups.items():
        span = max(_spec(r).timespan for r in group)
        qs = Activity.objects.filter(
            timestamp__gte=first - timedelta(seconds=span), timestamp__lte=last
        ).order_by()
        for field, op, values in prefilters:
            qs = _apply_prefilter(qs, field, op, values)
        if all(_columns(_spec(r).group_by) for r in group):
            # A window is measured per group (user, address...): only the stored rows of the
            # groups this batch's events fall in can change a verdict. Without this the read
            # grew with all traffic in the timespan (every export of every user, 6 h of
            # failed logins), whatever the batch held.
            qs = qs.filter(_in_groups(group, acts))
        cols = {"id", "timestamp"}
        for r in group:
            cols |= set(r.fields) | set(_spec(r).fields)
        rows = list(qs.values(*sorted(cols)))
        for r in group:
            lo = first - timedelta(seconds=_spec(r).timespan)
            out[r.id] = [row for row in rows if row["timestamp"] >= lo]
    return out


# --- verdicts --------------------------------------------------------------------------
def apply_suppression(findings: list[DetectorFinding]) -> None:
    silenced = {name for f in findings if not f.suppressed for name in f.suppresses}
    if not silenced:
        return
    for f in findings:
        if f.detector in silenced and not f.suppresses:
            f.suppressed = True


def combine(scores: list[float], method: str | None = None) -> float:
    if not scores:
        return 0.0
    method = method or tracking_settings.RISK_COMBINE
    if method == "noisy_or":
        p = 1.0
        for s in scores:
            p *= 1.0 - s
        return 1.0 - p
    return max(scores)


def decide(findings: list[DetectorFinding], threshold: float, method: str) -> tuple[float, bool]:
    active = [f for f in findings if not f.suppressed]
    risk = combine([f.score for f in active], method)
    return risk, any(f.flag for f in active) or (bool(active) and risk >= threshold)


def _apply_verdict(
    act: Activity, findings: list[DetectorFinding], threshold: float, method: str
) -> None:
    active = [f for f in findings if not f.suppressed]
    risk, flagged = decide(findings, threshold, method)
    tags = {t for f in active for t in f.tags}
    act.tags = sorted(set(act.tags or []) | tags)
    act.risk_score = round(max(float(act.risk_score or 0.0), risk), 6)
    sev = max_severity([act.severity or ""] + [f.severity for f in active])
    act.severity = sev if SEVERITY_RANK.get(sev, 0) else (act.severity or "")
    if flagged and not act.flagged:
        act.flagged = True
        if act.review_status not in (ReviewStatus.CONFIRMED, ReviewStatus.DISMISSED):
            act.review_status = str(ReviewStatus.OPEN)


def _finding_row(act: Activity, f: DetectorFinding) -> Finding:
    evidence = dict(f.evidence)
    if f.extra_tags:
        evidence.setdefault("tags", list(f.tags))
    if f.suppresses:
        evidence.setdefault("suppresses", list(f.suppresses))
    return Finding(
        activity=act,
        timestamp=act.timestamp,
        detector=f.detector[:64],
        tag=f.tag[:64],
        score=f.score,
        severity=f.severity or "low",
        reason=f.reason[:512],
        evidence=evidence,
        suppressed=f.suppressed,
        flag=f.flag,
    )


# --- the batch step --------------------------------------------------------------------
def _population_keys(pipe: Pipeline, observations: list[Observation]) -> set[str]:
    pairs: list[tuple[str, str]] = []
    for det in pipe.detectors:
        keys_for = getattr(det, "population_keys", None)
        if keys_for is not None:
            for obs in observations:
                pairs.extend(keys_for(obs))
    return Population.keys_for(pairs)


# City-level positions a profile keeps when no configured detector decides (restores run with
# detection off but must still leave the user's last place for the next live event).
DEFAULT_MAX_RADIUS_KM = 500


def teach(
    obs: Observation, profile: UserProfile, context: Context, detectors: list[Detector]
) -> None:
    profile.learn(obs)
    for det in detectors:
        det.update(obs, profile, context)
    if not any(hasattr(d, "locatable") for d in detectors):
        radius_ok = (obs.accuracy_radius or 0) <= DEFAULT_MAX_RADIUS_KM
        if obs.city and radius_ok and not context.suspicious:
            profile.set_location(obs)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run a batch without cyclic garbage collection.

    A batch allocates tens of thousands of short-lived containers (observations, features,
    findings, model instances) that reference counting frees anyway, yet their allocation
    count triggers collections that walk the whole long-lived heap (Django, scikit-learn,
    loaded profiles): measured at a quarter of ``detect_batch``'s CPU time. Collection resumes
    afterwards, so cycles made during the batch are still reclaimed. Only the thread that
    disabled collection re-enables it; if it was already off, it stays off.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def detect_batch(activities: list[Activity]) -> list[Finding]:
    """Judge one batch (see the module docstring); returns unsaved ``Finding`` rows."""
    if not activities:
        return []
    with gc_paused():
        return _detect_batch(activities)


def _detect_batch(activities: list[Activity]) -> list[Finding]:
    pipe = pipeline()
    refresh_models(pipe)
    threshold = float(tracking_settings.FLAG_THRESHOLD)
    method = tracking_settings.RISK_COMBINE
    observations = [observation(a) for a in activities]
    profiles = store.load_profiles(o.user_key for o in observations if o.user_key)
    population = Population(store.load_counters(NAMESPACE, _population_keys(pipe, observations)))
    engine = RuleEngine(pipe.rules)
    engine.start_batch(threshold_history(pipe.rules, activities))

    plain, batched = pipe.plain, pipe.batched
    per_event: list[list[DetectorFinding]] = [[] for _ in observations]
    prepared: dict[str, list[tuple[int, Observation, Any]]] = {d.name: [] for d in batched}
    # The writer hands batches in timestamp order; a caller that does not is not misjudged.
    order = sorted(range(len(observations)), key=lambda k: observations[k].epoch)
    for i in order:
        obs = observations[i]
        profile = profiles.get(obs.user_key) if obs.user_key else None
        if profile is None and obs.user_key and not obs.failed:
            # Failed attempts on unknown names (stuffing lists) create no profile rows.
            profile = profiles[obs.user_key] = UserProfile(key=obs.user_key)
        features = context_features(obs, profile)
        ctx = Context(now=obs.timestamp, population=population, features=features)
        findings: list[DetectorFinding] = []
        for det in plain:
            try:
                findings.extend(det.score(obs, profile, ctx))
            except Exception:  # noqa: BLE001 - one broken detector must not silence the others
                logger.exception("detector %s failed on %s", det.name, obs.id)
        for det in batched:
            prepared[det.name].append((i, obs, det.prepare(obs, profile, ctx)))
        findings.extend(engine.evaluate(obs, features))
        apply_suppression(findings)
        per_event[i] = findings
        if profile is None:
            continue
        profile.note(obs)
        if (
            obs.type == "AUTH"
            and not obs.failed
            and (features["new_asn"] or features["new_country"])
        ):
            profile.mark_novel_login(obs)
        risk, flagged = decide(findings, threshold, method)
        if not obs.failed and not flagged:
            ctx.suspicious = risk >= SUSPICIOUS
            teach(obs, profile, ctx, plain)

    for det in batched:
        items = prepared[det.name]
        try:
            results = det.score_prepared([(obs, row) for _, obs, row in items])
        except Exception:  # noqa: BLE001
            logger.exception("detector %s failed on a batch", det.name)
            continue
        for (i, _, _), found in zip(items, results, strict=True):
            if found:
                per_event[i].extend(found)
                apply_suppression(per_event[i])

    rows: list[Finding] = []
    for act, findings in zip(activities, per_event, strict=True):
        if not findings:
            continue
        _apply_verdict(act, findings, threshold, method)
        rows.extend(_finding_row(act, f) for f in findings)
    store.save_profiles(profiles.values())
    changed = population.changed()
    if changed:
        store.save_counters(NAMESPACE, changed)
    return rows


# --- feedback --------------------------------------------------------------------------
def on_review(activity: Activity, status: str) -> None:
    """Called by the review path after a verdict. "dismissed" teaches the user's profile (the
    place, network and device become known, so the same benign pattern stops firing);
    "confirmed" is kept as a label (in the profile, and ``tracking train`` leaves confirmed
    attacks out) and forgets whatever that event had taught."""
    if status not in (ReviewStatus.DISMISSED, ReviewStatus.CONFIRMED):
        return
    if activity.get_deferred_fields():
        # The review path loads only a few columns; one full read beats a query per field.
        activity = Activity.objects.get(pk=activity.pk)
    obs = observation(activity, with_params=False)
    if not obs.user_key:
        return
    pipe = pipeline()
    profile = store.load_profiles([obs.user_key]).get(obs.user_key) or UserProfile(key=obs.user_key)
    if status == ReviewStatus.DISMISSED:
        population = Population(store.load_counters(NAMESPACE, _population_keys(pipe, [obs])))
        ctx = Context(
            now=obs.timestamp, population=population, features=context_features(obs, profile)
        )
        teach(obs, profile, ctx, pipe.plain)
        profile.label("dismissed", obs.id)
        changed = population.changed()
        if changed:
            store.save_counters(NAMESPACE, changed)
    else:
        profile.forget(obs)
        profile.label("confirmed", obs.id)
    store.save_profiles([profile])
