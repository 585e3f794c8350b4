"""Volume baselines: exports, data access and payments per day and per hour against the user's
own history and the population's.

Every event of a known user is counted (``note``) in its category (``export``: a ``DATA``
event whose endpoint names an export; ``data``: other ``DATA``; ``payment``: ``PAYMENT``) for
the current UTC day and hour. When a day (an hour) ends, the counts of the events that *taught*
(succeeded and were not flagged) enter the user's history: one number per active day (hour) and
category, zeros included, the last ``history_days`` kept. So an attack's volume never becomes
the baseline.

An event is judged by the count of the day's (hour's) accepted events so far, itself included
(volume already flagged has alerted; it does not inflate the user's later work), against its
category's history once the user has ``min_days`` active days:
the threshold is the largest of ``usual × ratio``, ``usual + margin``, the robust bound
``median + mad_k × 1.4826 × MAD`` and ``min_count``, where ``usual`` is the 95th percentile of
the daily (hourly) counts. The population's distribution of daily counts (``Population``
counters ``vol_<category>`` by bucket) judges users without enough history: a count that fewer
than ``population_share`` of all active user-days reach, and at least ``2 × min_count``. Findings
explain themselves: "27 exports today, usual ≤ 2".
"""

from __future__ import annotations

from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile

CATEGORIES: tuple[str, ...] = ("export", "data", "payment")
NOUNS: dict[str, tuple[str, str]] = {
    "export": ("export", "exports"),
    "data": ("data access", "data accesses"),
    "payment": ("payment", "payments"),
}
# Upper bounds of the population's count buckets (the last one is open).
BUCKETS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 7, 11, 15, 23, 31, 47, 63, 95, 127)
DAY = 86400
HOUR = 3600


def bucket(count: int) -> int:
    for i, upper in enumerate(BUCKETS):
        if count <= upper:
            return i
    return len(BUCKETS)


def _median(values: list[int] | list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _quantile(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


class VolumeBaseline(Detector):
    name = "volume"
    tag = "unusual_volume"

    def __init__(
        self,
        categories: list[str] | tuple[str, ...] = CATEGORIES,
        export_keywords: list[str] | tuple[str, ...] = ("export", "download", "dump"),
        min_days: int = 7,
        history_days: int = 28,
        min_count: int = 4,
        ratio: float = 2.0,
        margin: int = 2,
        mad_k: float = 4.0,
        population_share: float = 0.001,
        base_score: float = 0.72,
        step: float = 0.03,
    ) -> None:
        self.categories = categories
        self.export_keywords = export_keywords
        self.min_days = min_days
        self.history_days = history_days
        self.min_count = min_count
        self.ratio = ratio
        self.margin = margin
        self.mad_k = mad_k
        self.population_share = population_share
        self.base_score = base_score
        self.step = step

    def validate(self) -> None:
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(
                f"categories: unknown categories {unknown}; choose from {list(CATEGORIES)}"
            )
        check_number("min_days", self.min_days, low=1)
        check_number("history_days", self.history_days, low=1)
        check_number("min_count", self.min_count, low=1)
        check_number("ratio", self.ratio, low=1)
        check_number("margin", self.margin, low=0)
        check_number("mad_k", self.mad_k, low=0)
        check_number("population_share", self.population_share, low=0, high=1)
        check_number("base_score", self.base_score, low=0, high=1)
        check_number("step", self.step, low=0, high=1)

    def fit(self, X: Any = None, y: Any = None) -> VolumeBaseline:
        self.categories_ = frozenset(self.categories)
        self.keywords_ = tuple(k.lower() for k in self.export_keywords)
        return self

    def category(self, event: Observation) -> str:
        if not hasattr(self, "categories_"):
            self.fit()
        if event.type == "PAYMENT":
            cat = "payment"
        elif event.type == "DATA":
            endpoint = event.endpoint.lower()
            cat = "export" if any(k in endpoint for k in self.keywords_) else "data"
        else:
            return ""
        return cat if cat in self.categories_ else ""

    def population_keys(self, event: Observation) -> list[tuple[str, str]]:
        cat = self.category(event)
        if not cat:
            return []
        return [(f"vol_{cat}", str(b)) for b in range(len(BUCKETS) + 1)]

    # --- state ------------------------------------------------------------------------
    @staticmethod
    def _state(profile: UserProfile) -> dict[str, Any]:
        return profile.data.setdefault("vol", {"d": None, "h": None, "c": {}, "hist": {}})

    def _roll(self, state: dict[str, Any], t: int, context: Context) -> None:
        """Close the day / hour that ended before ``t`` into the history."""
        day, hour = t // DAY, t // HOUR
        counts, hist = state["c"], state["hist"]
        if state["h"] is not None and hour > state["h"]:
            for cat in self.categories_:
                series = hist.setdefault(cat, {"d": [], "h": []})["h"]
                series.append(counts.get(cat, [0, 0, 0, 0])[3])
                del series[: -self.history_days * 24]
                if cat in counts:
                    counts[cat][2] = counts[cat][3] = 0
        if state["d"] is not None and day > state["d"]:
            for cat in self.categories_:
                taught = counts.get(cat, [0, 0, 0, 0])[1]
                series = hist.setdefault(cat, {"d": [], "h": []})["d"]
                series.append(taught)
                del series[: -self.history_days]
                if context.population is not None:
                    context.population.add(f"vol_{cat}", str(bucket(taught)))
            state["c"] = {}
        state["d"] = day if state["d"] is None else max(state["d"], day)
        state["h"] = hour if state["h"] is None else max(state["h"], hour)

    def note(self, event: Observation, profile: UserProfile | None, context: Context) -> None:
        if profile is None:
            return
        if not hasattr(self, "categories_"):
            self.fit()
        t = round(event.epoch)
        state = self._state(profile)
        if state["d"] is not None and t // DAY < state["d"]:
            return  # a late event of a closed day: its day is history already
        self._roll(state, t, context)
        cat = self.category(event)
        if cat:
            state["c"].setdefault(cat, [0, 0, 0, 0])
            state["c"][cat][0] += 1
            state["c"][cat][2] += 1
        profile.dirty = True

    def update(self, event: Observation, profile: UserProfile, context: Context) -> None:
        cat = self.category(event)
        state = profile.data.get("vol")
        if not cat or not state or state["d"] != round(event.epoch) // DAY:
            return
        counts = state["c"].setdefault(cat, [0, 0, 0, 0])
        counts[1] += 1
        if state["h"] == round(event.epoch) // HOUR:
            counts[3] += 1

    # --- judging ----------------------------------------------------------------------
    def threshold(self, history: list[int]) -> tuple[float, int]:
        usual = _quantile(history, 0.95)
        median = _median(history)
        mad = _median([abs(v - median) for v in history])
        bound = max(
            usual * self.ratio,
            usual + self.margin,
            median + self.mad_k * 1.4826 * mad,
            float(self.min_count),
        )
        return bound, usual

    def population_rarity(self, cat: str, count: int, context: Context) -> float | None:
        """Share of active user-days with at least ``count`` (None without population data)."""
        pop = context.population
        if pop is None:
            return None
        total = pop.total(f"vol_{cat}")
        if total < 100:
            return None
        at_least = sum(
            pop.count(f"vol_{cat}", str(b)) for b in range(bucket(count), len(BUCKETS) + 1)
        )
        return at_least / total

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if profile is None:
            return []
        cat = self.category(event)
        if not cat:
            return []
        t = round(event.epoch)
        state = profile.data.get("vol") or {}
        counts: list[int] | None = (
            state.get("c", {}).get(cat, [0, 0, 0, 0]) if state.get("d") == t // DAY else None
        )
        # Judged on what was accepted so far: volume already flagged has alerted, and must not
        # make the user's own later work look like more of it.
        today = (counts[1] if counts else 0) + 1
        hour_counts = counts if counts and state.get("h") == t // HOUR else None
        this_hour = (hour_counts[3] if hour_counts else 0) + 1
        # What the reason reports: every event of the window, the flagged ones included.
        totals = {
            "today": (counts[0] if counts else 0) + 1,
            "this hour": (hour_counts[2] if hour_counts else 0) + 1,
        }
        hist = state.get("hist", {}).get(cat, {})
        days, hours = hist.get("d", []), hist.get("h", [])
        one, many = NOUNS[cat]
        if len(days) >= self.min_days:
            windows = [("today", today, days)]
            if len(hours) >= self.min_days:
                windows.append(("this hour", this_hour, hours))
            worst = None
            for label, count, history in windows:
                bound, usual = self.threshold(history)
                if count > bound:
                    excess = (count - bound) / max(bound, 1.0)
                    if worst is None or excess > worst[0]:
                        worst = (excess, label, count, bound, usual)
            if worst is None:
                return []
            _, label, count, bound, usual = worst
            total = max(count, totals[label])
            reason = f"{total} {many if total != 1 else one} {label}, usual ≤ {usual}"
            evidence = {
                "category": cat,
                "window": "day" if label == "today" else "hour",
                "count": total,
                "accepted": count - 1,
                "usual": usual,
                "threshold": round(bound, 2),
                "median": _median(days if label == "today" else hours),
                "history": len(days),
            }
        else:
            share = self.population_rarity(cat, today, context)
            if share is None or share >= self.population_share or today < 2 * self.min_count:
                return []
            count, bound = today, 2 * self.min_count
            reason = (
                f"{today} {many} today; fewer than {share:.2%} of user-days reach that "
                "(too little history of this user)"
            )
            evidence = {"category": cat, "window": "day", "count": today, "population_share": share}
        score = min(0.95, self.base_score + self.step * (count - bound - 1))
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=score,
                severity="high" if score >= 0.85 else "medium",
                reason=reason,
                evidence=evidence,
            )
        ]
