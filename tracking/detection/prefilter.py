"""The rule pre-filter planner: the stored rows each threshold rule's look-back needs.

A threshold rule ("6 failed logins for one user in 15 minutes") is judged over its window, part
of which is already stored. Per batch, rules sharing pre-filters (the conditions a rule's
loader could turn into SQL: ``field in (...)``, numeric bounds) read their look-back
``[first event - timespan, last event]`` in one query, limited to the needed columns and,
when every group-by field is a column, to the groups (user, address...) the batch's events
fall in. Rules that no event of the batch can reach read nothing.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.db import models as dj_models

from detectors.rules import Rule
from detectors.rules.rule import Threshold
from tracking.models import Activity


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


@lru_cache(maxsize=256)
def _folded(values: tuple) -> frozenset[str]:
    return frozenset(str(v).lower() for v in values)


def _may_pass(act: Activity, prefilters: tuple) -> bool:
    """Could ``act`` pass these SQL pre-filters? Errs towards yes (case-insensitive text,
    unknown values pass): a no must mean no rule of the group can match the event."""
    for field, op, values in prefilters:
        value = getattr(act, field, None)
        if value is None:
            continue
        if op == "in":
            if isinstance(value, str):
                if value.lower() not in _folded(values):
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


def _reach(rules: list[Rule], acts: list[Activity]) -> dict[str, list[Activity]]:
    """The events of ``acts`` each rule can reach (by rule id), each event tried once per
    rule."""
    return {r.id: [a for a in acts if _reaches(r, a)] for r in rules}


def _in_groups(rules: list[Rule], reach: dict[str, list[Activity]]) -> dj_models.Q:
    """Rows sharing every group-by column's value with an event that can reach one of
    ``rules`` (``reach``: see ``_reach``; per column a set of values: a superset of the exact
    groups, which the windows then separate)."""
    cond = dj_models.Q(pk__in=[])
    for by in {tuple(_spec(r).group_by) for r in rules}:
        # Each event once, however many of the rules it reaches.
        union = {id(a): a for r in rules if tuple(_spec(r).group_by) == by for a in reach[r.id]}
        reaching = list(union.values())
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


def threshold_history(rules: list[Rule], acts: list[Activity]) -> dict[str, list[dict[str, Any]]]:
    """Stored rows each threshold rule needs, one query per group of rules sharing pre-filters
    (only for rules some event of the batch can reach)."""
    thresholded = [r for r in rules if r.threshold is not None]
    if not thresholded or not acts:
        return {}
    # The engine only feeds a rule's window with events of its types that match it: a rule
    # that no event of the batch reaches reads no look-back (a batch of API calls costs no
    # AUTH query).
    reach = _reach(thresholded, acts)
    thresholded = [r for r in thresholded if reach[r.id]]
    if not thresholded:
        return {}
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
            qs = qs.filter(_in_groups(group, reach))
        cols = {"id", "timestamp"}
        for r in group:
            cols |= set(r.fields) | set(_spec(r).fields)
        rows = list(qs.values(*sorted(cols)))
        for r in group:
            lo = first - timedelta(seconds=_spec(r).timespan)
            out[r.id] = [row for row in rows if row["timestamp"] >= lo]
    return out
