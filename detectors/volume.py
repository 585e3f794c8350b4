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

Peer groups: users who work alike are compared with each other rather than with the whole
site. A user's group is learned from their own activity mix: which of ``peer_types`` (admin
work, data access, payments) they use on at least ``peer_min_share`` of their active days
(decayed over ``history_days``), e.g. ``ADMIN+DATA+PAYMENT`` for a staff member who exports
and pays, ``PAYMENT`` for a customer; it is recomputed when a day ends. Each closed day is
counted for the user's group too (counters ``vol_<category>@<group>``), so the engine loads
them like any population counter (no I/O in ``score``). With ``peer_min_days`` of the group's
user-days counted:

- a user with too little history is judged against their peers instead of the whole site;
- a user *with* history whose own baseline drifted upward (a few high days make the 95th
  percentile, and so the threshold, climb) is still compared with the peers: a day count above
  ``2 × min_count`` and ``peer_ratio`` × the user's median day that fewer than
  ``population_share`` of the peers' days reach is flagged, though under the user's own bound;
- the reason says both: "27 exports today; usual ≤ 2 for this user, ≤ 3 for their peers".
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number, median_of
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
NO_GROUP = "-"  # a user none of whose days use the peer types often enough


def bucket(count: int) -> int:
    for i, upper in enumerate(BUCKETS):
        if count <= upper:
            return i
    return len(BUCKETS)


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
        peer_types: list[str] | tuple[str, ...] = ("ADMIN", "DATA", "PAYMENT"),
        peer_min_share: float = 0.25,
        peer_min_days: int = 100,
        peer_ratio: float = 3.0,
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
        self.peer_types = peer_types
        self.peer_min_share = peer_min_share
        self.peer_min_days = peer_min_days
        self.peer_ratio = peer_ratio

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
        if len(self.peer_types) > 6 or not all(
            isinstance(t, str) and t and "+" not in t for t in self.peer_types
        ):
            raise ValueError(
                f"peer_types: at most 6 activity types (no '+'), got {list(self.peer_types)!r}"
            )
        check_number("peer_min_share", self.peer_min_share, low=0, high=1)
        check_number("peer_min_days", self.peer_min_days, low=1)
        check_number("peer_ratio", self.peer_ratio, low=1)

    def fit(self, X: Any = None, y: Any = None) -> VolumeBaseline:
        self.categories_ = frozenset(self.categories)
        self.keywords_ = tuple(k.lower() for k in self.export_keywords)
        self.peer_types_ = tuple(sorted(set(self.peer_types)))
        # Every group a user can be in (all subsets of the peer types): the counters a
        # category's event may need, computed once.
        groups = [NO_GROUP] + [
            "+".join(c)
            for n in range(1, len(self.peer_types_) + 1)
            for c in combinations(self.peer_types_, n)
        ]
        self.keys_ = {
            cat: list(
                (feature, str(b))
                for feature in [f"vol_{cat}"] + [f"vol_{cat}@{g}" for g in groups]
                for b in range(len(BUCKETS) + 1)
            )
            for cat in CATEGORIES
        }
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
        return self.keys_[cat]  # shared: callers only read it

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
            group = self._close_mix(state)
            for cat in self.categories_:
                taught = counts.get(cat, [0, 0, 0, 0])[1]
                series = hist.setdefault(cat, {"d": [], "h": []})["d"]
                series.append(taught)
                del series[: -self.history_days]
                if context.population is not None:
                    context.population.add(f"vol_{cat}", str(bucket(taught)))
                    context.population.add(f"vol_{cat}@{group}", str(bucket(taught)))
            state["c"] = {}
        state["d"] = day if state["d"] is None else max(state["d"], day)
        state["h"] = hour if state["h"] is None else max(state["h"], hour)

    def _close_mix(self, state: dict[str, Any]) -> str:
        """Fold the closing day's activity types into the user's decayed mix; the group."""
        keep = 1.0 - 1.0 / self.history_days
        mix = state.setdefault("mix", {})
        used = state.pop("ty", "")
        for t in self.peer_types_:
            mix[t] = round(mix.get(t, 0.0) * keep + (t in used.split("+")), 4)
        days = state["nd"] = round(state.get("nd", 0.0) * keep + 1.0, 4)
        group = "+".join(t for t in self.peer_types_ if mix[t] >= self.peer_min_share * days)
        state["g"] = group or NO_GROUP
        return state["g"]

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
        if not hasattr(self, "categories_"):
            self.fit()
        state = profile.data.get("vol")
        if not state or state["d"] != round(event.epoch) // DAY:
            return
        if event.type in self.peer_types_:
            used = state.get("ty", "")
            if event.type not in used.split("+"):
                state["ty"] = f"{used}+{event.type}" if used else event.type
        cat = self.category(event)
        if not cat:
            return
        counts = state["c"].setdefault(cat, [0, 0, 0, 0])
        counts[1] += 1
        if state["h"] == round(event.epoch) // HOUR:
            counts[3] += 1

    # --- judging ----------------------------------------------------------------------
    def threshold(self, history: list[int]) -> tuple[float, int]:
        usual = _quantile(history, 0.95)
        median = median_of(history)
        mad = median_of([abs(v - median) for v in history])
        bound = max(
            usual * self.ratio,
            usual + self.margin,
            median + self.mad_k * 1.4826 * mad,
            float(self.min_count),
        )
        return bound, usual

    def population_rarity(
        self, cat: str, count: int, context: Context, group: str = ""
    ) -> float | None:
        """Share of active user-days (of the peer ``group`` when given) with at least
        ``count`` (None without enough counted days)."""
        pop = context.population
        if pop is None:
            return None
        feature = f"vol_{cat}@{group}" if group else f"vol_{cat}"
        total = pop.total(feature)
        if total < (self.peer_min_days if group else 100):
            return None
        at_least = sum(pop.count(feature, str(b)) for b in range(bucket(count), len(BUCKETS) + 1))
        return at_least / total

    def peer_usual(self, cat: str, group: str, context: Context) -> int | None:
        """The count 95 % of the peers' days stay within (a bucket's upper bound)."""
        pop = context.population
        if pop is None or not group:
            return None
        feature = f"vol_{cat}@{group}"
        total = pop.total(feature)
        if total < self.peer_min_days:
            return None
        seen = 0
        for b, upper in enumerate(BUCKETS):
            seen += pop.count(feature, str(b))
            if seen >= 0.95 * total:
                return upper
        return None  # beyond the last bucket: the peers' usual day is unbounded

    def _finding(self, count: int, bound: float, reason: str, evidence: dict) -> list[Finding]:
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
        group = state.get("g", "")
        one, many = NOUNS[cat]
        if len(days) < self.min_days:
            return self._short_history(cat, today, totals["today"], group, context)
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
            return self._drift(cat, today, totals["today"], days, group, context)
        _, label, count, bound, usual = worst
        total = max(count, totals[label])
        noun = many if total != 1 else one
        peers = self.peer_usual(cat, group, context) if label == "today" else None
        if peers is None:
            reason = f"{total} {noun} {label}, usual ≤ {usual}"
        else:
            reason = (
                f"{total} {noun} {label}; usual ≤ {usual} for this user, ≤ {peers} for their peers"
            )
        evidence = {
            "category": cat,
            "window": "day" if label == "today" else "hour",
            "count": total,
            "accepted": count - 1,
            "usual": usual,
            "threshold": round(bound, 2),
            "median": median_of(days if label == "today" else hours),
            "history": len(days),
            "peer_group": group,
            "peer_usual": peers,
        }
        return self._finding(count, bound, reason, evidence)

    def _short_history(
        self, cat: str, today: int, total: int, group: str, context: Context
    ) -> list[Finding]:
        """Too little history of the user: their peers judge, else the whole site."""
        if today < 2 * self.min_count:
            return []
        share = self.population_rarity(cat, today, context, group) if group else None
        whom = "their peers' days"
        if share is None:
            share, whom = self.population_rarity(cat, today, context), "user-days"
        if share is None or share >= self.population_share:
            return []
        _, many = NOUNS[cat]
        reason = (
            f"{max(today, total)} {many} today; fewer than {share:.2%} of {whom} reach that "
            "(too little history of this user)"
        )
        evidence = {
            "category": cat,
            "window": "day",
            "count": max(today, total),
            "population_share": share,
            "peer_group": group if whom != "user-days" else "",
        }
        return self._finding(today, 2 * self.min_count, reason, evidence)

    def _drift(
        self, cat: str, today: int, total: int, days: list[int], group: str, context: Context
    ) -> list[Finding]:
        """Under the user's own bound: still far above their median day and rare among peers
        (a baseline that drifted upward does not hide volume no peer reaches)."""
        median = median_of(days)
        if today < 2 * self.min_count or today <= self.peer_ratio * max(median, 1.0) or not group:
            return []
        share = self.population_rarity(cat, today, context, group)
        if share is None or share >= self.population_share:
            return []
        usual = _quantile(days, 0.95)
        peers = self.peer_usual(cat, group, context)
        _, many = NOUNS[cat]
        reason = (
            f"{total} {many} today; usual ≤ {usual} for this user (a typical day {median:g}), "
            f"≤ {peers if peers is not None else '?'} for their peers"
        )
        evidence = {
            "category": cat,
            "window": "day",
            "count": total,
            "accepted": today - 1,
            "usual": usual,
            "median": median,
            "history": len(days),
            "peer_group": group,
            "peer_usual": peers,
            "peer_share": share,
        }
        # The bound this count passed: the first count that reaches the rules flags.
        bound = max(self.peer_ratio * max(median, 1.0), 2 * self.min_count - 1)
        return self._finding(today, bound, reason, evidence)
