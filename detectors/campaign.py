"""Distributed attacks: site-wide failed-login baselines learned from the site's own history.

A botnet trying one or two passwords from each of dozens of addresses leaves nothing per
address or per account; what it changes is the *site*: failed logins per hour, distinct
accounts failing, and failures on accounts that do not exist (a stuffing list's names). Every
failed login is counted (``note``) in ``Population`` counters per UTC hour (``camp_fail``,
``camp_acct`` distinct accounts, ``camp_unknown`` distinct names that do not exist,
``camp_stranger`` failures from strangers — see :func:`stranger` — and ``camp_cc`` their
distinct countries, the campaign's country mix); the history of the last ``history_hours``
hours is the baseline. Strangers are rare on an ordinary day (the owner mistypes at home), so
a botnet stands out after a handful of tries rather than a dozen. A failed login is judged on its window (this hour and
the previous one, so a campaign spanning an hour boundary stays visible) against a threshold
learned from that history: the largest of ``quantile`` of the hourly counts × ``ratio``,
``median + mad_k × 1.4826 × MAD`` and a floor (``min_failures``, ``min_accounts``,
``min_unknown``, ``min_strangers``, ``min_countries``). The quantile is deliberately not the maximum: an earlier attack in the history
must not raise the bar for the next one. Nothing is judged before
``min_history_hours`` hours of the site's history.

A failure on an account that does not exist (no profile: the name never signed in; a claimed
name matching no account is stored masked and never has one) is an attempt on a name from a
list — counted once per name and hour, so one person retrying a mistyped name is not a list —
and always part of what is counted, and when the window is anomalous every failed
login in it is flagged as part of the campaign, with the counts that made it one — except an attempt from the account's own network and
browser (the owner mistyping meanwhile), which is weighed by ``familiar_factor`` and does not
flag on its own. Verdicts are made per event at ingest; when the campaign is recognised later
in the same batch, ``revisit`` gives the batch's earlier strangers counted in the crossing
window its finding too (``backfill``).
"""

from __future__ import annotations

from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number, median_of
from detectors.features import stranger, unknown_name
from detectors.profile import UserProfile

HOUR = 3600
METRICS: tuple[str, ...] = ("camp_fail", "camp_acct", "camp_unknown", "camp_stranger", "camp_cc")
LABELS: dict[str, str] = {
    "camp_fail": "failed logins",
    "camp_acct": "accounts failing",
    "camp_unknown": "names that do not exist failing",
    "camp_stranger": "failed logins from outside the accounts' own networks and browsers",
    "camp_cc": "countries of such failed logins",
}
FIRST = "camp_first"  # the first hour the site's failures were counted


def backfilled(hit: Finding, hit_event: Observation, attempts: int) -> Finding:
    """The finding an earlier attempt of a campaign gets once the campaign is recognised later
    in the same batch."""
    return Finding(
        detector=hit.detector,
        tag=hit.tag,
        score=hit.score,
        severity=hit.severity,
        reason=f"Part of a campaign recognised {attempts} attempt(s) later, at "
        f"{hit_event.timestamp:%H:%M} UTC: {hit.reason}",
        evidence={**hit.evidence, "recognised_at": hit_event.timestamp.isoformat()},
        extra_tags=hit.extra_tags,
    )


class FailureCampaign(Detector):
    name = "campaign"
    tag = "login_campaign"
    retroactive = True

    def __init__(
        self,
        history_hours: int = 168,
        min_history_hours: int = 48,
        quantile: float = 0.9,
        ratio: float = 2.0,
        mad_k: float = 6.0,
        min_failures: int = 12,
        min_accounts: int = 10,
        min_unknown: int = 3,
        min_strangers: int = 4,
        min_countries: int = 4,
        weight: float = 0.8,
        familiar_factor: float = 0.5,
        backfill: bool = True,
    ) -> None:
        self.history_hours = history_hours
        self.min_history_hours = min_history_hours
        self.quantile = quantile
        self.ratio = ratio
        self.mad_k = mad_k
        self.min_failures = min_failures
        self.min_accounts = min_accounts
        self.min_unknown = min_unknown
        self.min_strangers = min_strangers
        self.min_countries = min_countries
        self.weight = weight
        self.familiar_factor = familiar_factor
        self.backfill = backfill

    def validate(self) -> None:
        check_number("history_hours", self.history_hours, low=2)
        check_number("min_history_hours", self.min_history_hours, low=1)
        check_number("quantile", self.quantile, low=0, high=1)
        check_number("ratio", self.ratio, low=1)
        check_number("mad_k", self.mad_k, low=0)
        for name in (
            "min_failures",
            "min_accounts",
            "min_unknown",
            "min_strangers",
            "min_countries",
        ):
            check_number(name, getattr(self, name), low=1)
        check_number("weight", self.weight, low=0, high=1)
        check_number("familiar_factor", self.familiar_factor, low=0, high=1)

    @staticmethod
    def applies(event: Observation) -> bool:
        return event.type == "AUTH" and event.failed

    def floors(self) -> dict[str, int]:
        return {
            "camp_fail": self.min_failures,
            "camp_acct": self.min_accounts,
            "camp_unknown": self.min_unknown,
            "camp_stranger": self.min_strangers,
            "camp_cc": self.min_countries,
        }

    def fit(self, X: Any = None, y: Any = None) -> FailureCampaign:
        # Per hour: the counter keys of its history and the thresholds learned from it (past
        # hours do not change within a batch; both are small and bounded).
        self.hour_keys_: dict[int, list[tuple[str, str]]] = {}
        self.bounds_: dict[tuple[int, str, int], float] = {}
        return self

    def _memo(self) -> None:
        if not hasattr(self, "bounds_") or len(self.bounds_) > 4096:
            self.fit()

    def population_keys(self, event: Observation) -> list[tuple[str, str]]:
        if not self.applies(event):
            return []
        self._memo()
        hour = int(event.epoch) // HOUR
        # Once this process learned the hour's thresholds from a full history, only the
        # window's counters are read again (the history of past hours does not change).
        settled = all((hour, m, self.history_hours) in self.bounds_ for m in METRICS)
        keys = self.hour_keys_.get(-hour if settled else hour)
        if keys is None:
            if len(self.hour_keys_) > 64:
                self.hour_keys_.clear()
            keys = [(FIRST, "hour")]
            first = hour - 1 if settled else hour - self.history_hours
            for metric in METRICS:
                keys.extend((metric, str(h)) for h in range(first, hour + 1))
            self.hour_keys_[-hour if settled else hour] = keys
        return [
            *keys,
            ("camp_seen", f"{hour}|{event.user_key or event.username}"),
            ("camp_seen", f"{hour}|cc:{event.country}"),
        ]

    def note(self, event: Observation, profile: UserProfile | None, context: Context) -> None:
        pop = context.population
        if pop is None or not self.applies(event):
            return
        hour = int(event.epoch) // HOUR
        pop.set_once(FIRST, "hour", hour)
        pop.add("camp_fail", str(hour))
        if self._first_this_hour(event, pop):
            pop.add("camp_acct", str(hour))
            if unknown_name(profile):
                pop.add("camp_unknown", str(hour))
        pop.add("camp_seen", self._account(event))
        if stranger(event, profile):
            pop.add("camp_stranger", str(hour))
            if event.country and self._first_country(event, pop):
                pop.add("camp_cc", str(hour))
            pop.add("camp_seen", f"{hour}|cc:{event.country}")

    @staticmethod
    def _account(event: Observation) -> str:
        return f"{int(event.epoch) // HOUR}|{event.user_key or event.username}"

    def _first_this_hour(self, event: Observation, pop: Any) -> bool:
        """Whether this is the hour's first failure naming this account (or claimed name)."""
        return pop.count("camp_seen", self._account(event)) == 0

    @staticmethod
    def _first_country(event: Observation, pop: Any) -> bool:
        """Whether this is the hour's first failure from outside an account's own places from
        the event's country (the country mix of a campaign)."""
        return pop.count("camp_seen", f"{int(event.epoch) // HOUR}|cc:{event.country}") == 0

    def threshold(self, history: list[int], floor: int) -> float:
        ranked = sorted(history)
        high = ranked[min(len(ranked) - 1, int(self.quantile * (len(ranked) - 1) + 0.5))]
        median = median_of(history)
        mad = median_of([abs(v - median) for v in history])
        return max(high * self.ratio, median + self.mad_k * 1.4826 * mad, float(floor))

    def score_event(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        pop = context.population
        if pop is None or not self.applies(event):
            return []
        self._memo()
        hour = int(event.epoch) // HOUR
        first = pop.count(FIRST, "hour") or None
        if first is None or hour - int(first) < self.min_history_hours:
            return []
        worst: tuple[float, str, int, float] | None = None
        span = min(self.history_hours, hour - int(first))
        unknown = unknown_name(profile)
        first_time = self._first_this_hour(event, pop)
        # This event counts as well (the window so far, itself included) where ``note`` will
        # count it: every failure, but an account or unknown name once per hour.
        outsider = stranger(event, profile)
        adds = {
            "camp_fail": 1,
            "camp_acct": int(first_time),
            "camp_unknown": int(first_time and unknown),
            "camp_stranger": int(outsider),
            "camp_cc": int(outsider and bool(event.country) and self._first_country(event, pop)),
        }
        for metric, floor in self.floors().items():
            window = pop.count(metric, str(hour)) + pop.count(metric, str(hour - 1)) + adds[metric]
            bound = self.bounds_.get((hour, metric, span))
            if bound is None:
                history = [
                    pop.count(metric, str(h)) + pop.count(metric, str(h - 1))
                    for h in range(hour - span, hour - 1)
                ]
                if len(history) < 2:
                    continue
                bound = self.bounds_[(hour, metric, span)] = self.threshold(history, floor)
            if window > bound and (worst is None or window / bound > worst[0]):
                worst = (window / bound, metric, window, bound)
        if worst is None:
            return []
        _, metric, window, bound = worst
        # The owner mistyping from their own network and browser during a campaign is not part
        # of it: noted, weighed less, not flagged on its own.
        familiar = not outsider
        reason = (
            f"Login campaign: {window} {LABELS[metric]} in two hours site-wide, usual ≤ "
            f"{bound:.0f}"
            + ("; this account does not exist" if unknown else "")
            + (
                "; this attempt comes from the account's usual network and browser"
                if familiar
                else ""
            )
        )
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=self.weight * (self.familiar_factor if familiar else 1.0),
                severity="low" if familiar else "high",
                reason=reason,
                evidence={
                    "metric": metric,
                    "window_count": window,
                    "threshold": round(bound, 2),
                    "unknown_account": unknown,
                    "familiar": familiar,
                    "failed_logins": pop.count("camp_fail", str(hour))
                    + pop.count("camp_fail", str(hour - 1)),
                },
            )
        ]

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        return self.score_event(event, profile, context)

    def revisit(
        self, judged: list[tuple[Observation, UserProfile | None, list[Finding]]]
    ) -> dict[int, list[Finding]]:
        """The batch's failures from strangers that came before the campaign was recognised
        and were counted in the window that crossed (its hour or the one before) get its
        finding too: verdicts are made at ingest, but a batch is judged as a whole."""
        if not self.backfill:
            return {}
        added: dict[int, list[Finding]] = {}
        hit: tuple[int, Observation, Finding] | None = None
        for k in range(len(judged) - 1, -1, -1):
            event, profile, findings = judged[k]
            own = [f for f in findings if f.detector == self.name and not f.suppressed]
            if own:
                if own[0].severity == "high":
                    hit = (k, event, own[0])
                continue
            if hit is None or not self.applies(event) or not stranger(event, profile):
                continue
            j, hit_event, finding = hit
            if int(event.epoch) // HOUR >= int(hit_event.epoch) // HOUR - 1:
                added[k] = [backfilled(finding, hit_event, j - k)]
        return added
