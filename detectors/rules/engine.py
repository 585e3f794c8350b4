"""Evaluating rules on a batch: plain rules per event, threshold rules over a sliding window.

Threshold windows are fed the look-back rows the glue read from the database (rows in
``[batch start - timespan, batch end]`` matching the rule's pre-filters) and then every event of
the batch in timestamp order, so an import of last month's log gives the verdicts live traffic
got: windows are judged by event timestamps only.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from detectors.base import Finding, Observation
from detectors.rules.rule import Getter, Rule

UTC = dt_timezone.utc


def observation_getter(obs: Observation, features: dict[str, Any]) -> Getter:
    def get(name: str) -> Any:
        if name.startswith("ctx."):
            return features.get(name[4:])
        return obs.get(name)

    return get


class ThresholdWindow:
    """Matching events of one threshold rule, per group, sorted by time."""

    def __init__(self, rule: Rule) -> None:
        assert rule.threshold is not None
        self.rule = rule
        self.spec = rule.threshold
        self.times: dict[tuple, list[float]] = {}
        self.items: dict[tuple, list[tuple[float, str, Any]]] = {}
        self.seen: set[str] = set()

    def group_key(self, get: Getter) -> tuple:
        return tuple(get(f) for f in self.spec.group_by)

    def add(self, ts: float, ident: str, get: Getter) -> tuple:
        key = self.group_key(get)
        if ident and ident in self.seen:
            return key
        if ident:
            self.seen.add(ident)
        value = get(self.spec.distinct) if self.spec.distinct else None
        times = self.times.setdefault(key, [])
        items = self.items.setdefault(key, [])
        i = bisect_right(times, ts)
        times.insert(i, ts)
        items.insert(i, (ts, ident, value))
        return key

    def measure(self, ts: float, key: tuple) -> tuple[int, int | None, float | None]:
        """(events, distinct values or None, first timestamp) in ``[ts - timespan, ts]``."""
        times = self.times.get(key, [])
        lo = bisect_left(times, ts - self.spec.timespan)
        hi = bisect_right(times, ts)
        n = hi - lo
        if n == 0:
            return 0, None, None
        distinct = None
        if self.spec.distinct:
            if n < self.spec.count:
                distinct = n  # cannot reach the threshold; an upper bound is enough
            else:
                distinct = len({v for _, _, v in self.items[key][lo:hi] if v not in (None, "")})
        return n, distinct, times[lo]


class RuleEngine:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self.plain = [r for r in self.rules if r.threshold is None]
        self.thresholded = [r for r in self.rules if r.threshold is not None]
        self.windows: dict[str, ThresholdWindow] = {}
        self._by_type: dict[str, tuple[list[Rule], list[Rule]]] = {}
        # Every field any rule reads: resolved once per event into a plain dict.
        self.fields = tuple(
            sorted(
                {f for r in self.rules for f in r.fields}
                | {f for r in self.thresholded if r.threshold for f in r.threshold.fields}
            )
        )

    def _rules_for(self, type_: str) -> tuple[list[Rule], list[Rule]]:
        key = (type_ or "").upper()
        found = self._by_type.get(key)
        if found is None:
            found = self._by_type[key] = (_gated(self.plain, key), _gated(self.thresholded, key))
        return found

    def start_batch(self, history: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """Reset windows and feed each threshold rule its look-back rows (dicts of columns,
        ``timestamp`` as datetime or epoch seconds, ``id``)."""
        self.windows = {r.id: ThresholdWindow(r) for r in self.thresholded}
        for rule_id, rows in (history or {}).items():
            window = self.windows.get(rule_id)
            if window is None:
                continue
            for row in rows:
                get = row.get
                if window.rule.matches(get):
                    ts = row["timestamp"]
                    ts = ts.timestamp() if isinstance(ts, datetime) else float(ts)
                    window.add(ts, str(row.get("id", "")), get)

    def evaluate(self, obs: Observation, features: dict[str, Any]) -> list[Finding]:
        plain, thresholded = self._rules_for(obs.type)
        out: list[Finding] = []
        if not plain and not thresholded:
            return out
        resolve = observation_getter(obs, features)
        get = {f: resolve(f) for f in self.fields}.get
        for rule in plain:
            if rule.matches(get):
                out.append(rule.finding({}, rule.title))
        if not thresholded:
            return out
        ts = obs.epoch
        for rule in thresholded:
            if not rule.matches(get):
                continue
            window = self.windows.get(rule.id)
            if window is None:
                window = self.windows[rule.id] = ThresholdWindow(rule)
            key = window.add(ts, obs.id, get)
            spec = window.spec
            n, distinct, first = window.measure(ts, key)
            value = distinct if spec.distinct else n
            if value is None or value < spec.count:
                continue
            group = ", ".join(f"{f}={v}" for f, v in zip(spec.group_by, key, strict=True))
            what = f"{value} distinct {spec.distinct}" if spec.distinct else f"{value} events"
            span = _span_text(spec.timespan)
            reason = f"{rule.title}: {what} in {span}" + (f" ({group})" if group else "")
            out.append(
                rule.finding(
                    {
                        "count": n,
                        "distinct": distinct,
                        "threshold": spec.count,
                        "timespan_s": spec.timespan,
                        "group": dict(zip(spec.group_by, [_jsonable(v) for v in key], strict=True)),
                        "window_start": datetime.fromtimestamp(first, UTC).isoformat()
                        if first
                        else None,
                    },
                    reason,
                )
            )
        return out


def _gated(rules: list[Rule], type_: str) -> list[Rule]:
    return [r for r in rules if r.types is None or type_ in r.types]


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _span_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"
