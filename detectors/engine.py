"""The detection policy: one batch of observations in, one verdict per event out.

:class:`Engine` walks a batch in timestamp order. For each event it derives the context
(novelty, rates, local hour) from the user's profile *before* the event, asks every detector
and rule, applies suppression, and then lets the event teach the profile when it succeeded and
was not flagged, so an attacker's network never becomes "known" by itself (a reviewer's
dismissal teaches it: :meth:`Engine.dismiss`). An event that teaches although its risk reached
``suspicious`` teaches its network and device but not its position. Batched detectors
(IsolationForest) score all rows at the end with one call. Everything is judged by the events'
own timestamps; nothing here reads a database, the network or the wall clock.

Verdict: tags = union of the non-suppressed findings' tags; risk = the combination of their
scores (``risk_combine``: ``max``, or ``noisy_or`` = 1 - Π(1 - s)); severity = the highest;
flagged when a finding says flag (impossible travel, a flagging rule) or the risk reaches
``flag_threshold``.

The caller loads what the engine reads (profiles, population counters, the look-back rows of
threshold rules) and stores what it changed (profiles and counters left dirty, the verdicts):
in this project that is ``tracking.detection``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from detectors.base import Context, Detector, Finding, max_severity
from detectors.features import context_features
from detectors.observation import Observation
from detectors.orgnetworks import NetworkLearner
from detectors.population import Population
from detectors.profile import UserProfile
from detectors.rules import Rule, RuleEngine

# Detection logs under the name operators already route (the Django app's logger).
logger = logging.getLogger("tracking.detection")

RISK_COMBINE_METHODS: tuple[str, ...] = ("max", "noisy_or")
# Risk from which an unflagged event still teaches networks and devices but not its position.
SUSPICIOUS = 0.5
# City-level positions a profile keeps when no configured detector locates (restores run with
# detection off but must still leave the user's last place for the next live event).
DEFAULT_MAX_RADIUS_KM = 500


def apply_suppression(findings: list[Finding]) -> None:
    """Mark the findings of detectors that another finding on the same event suppresses."""
    silenced = {name for f in findings if not f.suppressed for name in f.suppresses}
    if not silenced:
        return
    for f in findings:
        if f.detector in silenced and not f.suppresses:
            f.suppressed = True


def combine(scores: list[float], method: str = "max") -> float:
    """One risk from several scores: ``max``, or ``noisy_or`` = 1 - Π(1 - s)."""
    if not scores:
        return 0.0
    if method == "noisy_or":
        p = 1.0
        for s in scores:
            p *= 1.0 - s
        return 1.0 - p
    return max(scores)


def decide(findings: list[Finding], threshold: float, method: str) -> tuple[float, bool]:
    """(risk, flagged) of an event's findings, suppressed ones left out."""
    active = [f for f in findings if not f.suppressed]
    risk = combine([f.score for f in active], method)
    return risk, any(f.flag for f in active) or (bool(active) and risk >= threshold)


@dataclass(slots=True)
class Verdict:
    """What the engine concluded about one event."""

    findings: list[Finding]
    risk: float = 0.0
    flagged: bool = False

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed]

    @property
    def tags(self) -> set[str]:
        return {t for f in self.active for t in f.tags}

    @property
    def severity(self) -> str:
        """The highest severity of the active findings ("" when none)."""
        return max_severity(f.severity for f in self.active)


class Engine:
    """Detectors and rules with the policy that turns their findings into verdicts.

    Parameters are stored as given (scikit-learn style); an engine keeps no state between
    batches except what its detectors learned when fitted or given a trained model.
    """

    def __init__(
        self,
        detectors: Iterable[Detector] = (),
        rules: Iterable[Rule] = (),
        *,
        flag_threshold: float = 0.7,
        risk_combine: str = "max",
        suspicious: float = SUSPICIOUS,
    ) -> None:
        self.detectors = list(detectors)
        self.rules = list(rules)
        self.flag_threshold = flag_threshold
        self.risk_combine = risk_combine
        self.suspicious = suspicious

    @property
    def plain(self) -> list[Detector]:
        return [d for d in self.detectors if not d.batched]

    @property
    def batched(self) -> list[Detector]:
        return [d for d in self.detectors if d.batched]

    # --- what a batch reads ---------------------------------------------------------------
    def population_keys(
        self, observations: Iterable[Observation], learner: NetworkLearner | None = None
    ) -> set[str]:
        """The population counters the detectors (and the network learner) read for these
        events (load them first)."""
        observations = list(observations)
        # A set: events of the same hour or network ask for the same counters.
        pairs: set[tuple[str, str]] = set()
        for det in self.detectors:
            for obs in observations:
                pairs.update(det.population_keys(obs))
        if learner is not None:
            for obs in observations:
                pairs.update(learner.population_keys(obs))
        return Population.keys_for(pairs)

    # --- the batch ------------------------------------------------------------------------
    def run(
        self,
        observations: Sequence[Observation],
        profiles: dict[str, UserProfile],
        population: Population | None = None,
        history: dict[str, list[dict[str, Any]]] | None = None,
        learner: NetworkLearner | None = None,
    ) -> list[Verdict]:
        """Judge a batch; returns one :class:`Verdict` per observation, in the given order.

        ``profiles`` holds the stored profiles by user key: they are updated in place and the
        profiles of users seen for the first time are added (failed attempts on unknown names
        create none); the caller saves those left ``dirty``. ``population`` holds the counters
        of :meth:`population_keys` (its ``changed()`` are to be saved); ``history`` the
        look-back rows of each threshold rule by rule id (see ``RuleEngine.start_batch``);
        ``learner`` notices organisation networks (a network learned during the batch is
        trusted for the batch's later events; the caller stores ``learner.learned``).
        """
        if population is None:
            population = Population()
        threshold, method = float(self.flag_threshold), self.risk_combine
        rule_engine = RuleEngine(self.rules)
        rule_engine.start_batch(history)

        plain, batched = self.plain, self.batched
        per_event: list[list[Finding]] = [[] for _ in observations]
        prepared: dict[str, list[tuple[int, Observation, Any]]] = {d.name: [] for d in batched}
        # Batches normally arrive in timestamp order; one that does not is not misjudged.
        order = sorted(range(len(observations)), key=lambda k: observations[k].epoch)
        for i in order:
            obs = observations[i]
            if learner is not None and not obs.trusted_network:
                obs.trusted_network = learner.name_for(obs)
            profile = profiles.get(obs.user_key) if obs.user_key else None
            if profile is None and obs.user_key and not obs.failed:
                # Failed attempts on unknown names (stuffing lists) create no profiles.
                profile = profiles[obs.user_key] = UserProfile(key=obs.user_key)
            features = context_features(obs, profile)
            ctx = Context(now=obs.timestamp, population=population, features=features)
            findings: list[Finding] = []
            for det in plain:
                try:
                    findings.extend(det.score(obs, profile, ctx))
                except Exception:  # one broken detector must not silence the others
                    logger.exception("detector %s failed on %s", det.name, obs.id)
            for det in batched:
                prepared[det.name].append((i, obs, det.prepare(obs, profile, ctx)))
            findings.extend(rule_engine.evaluate(obs, features))
            apply_suppression(findings)
            per_event[i] = findings
            for det in plain:
                det.note(obs, profile, ctx)
            if profile is None:
                continue
            if learner is not None:
                learner.observe(obs, profile, population)
            risk, flagged = decide(findings, threshold, method)
            self.remember(obs, profile, ctx, flagged=flagged, risk=risk)
            if learner is not None and not obs.failed and not flagged:
                learner.taught(obs, population)

        self.revisit(order, observations, profiles, per_event)
        for det in batched:
            items = prepared[det.name]
            try:
                results = det.score_prepared([(obs, row) for _, obs, row in items])
            except Exception:  # one broken detector must not silence the others
                logger.exception("detector %s failed on a batch", det.name)
                continue
            for (i, _, _), found in zip(items, results, strict=True):
                if found:
                    per_event[i].extend(found)
                    apply_suppression(per_event[i])

        verdicts = []
        for findings in per_event:
            risk, flagged = decide(findings, threshold, method)
            verdicts.append(Verdict(findings=findings, risk=risk, flagged=flagged))
        return verdicts

    def revisit(
        self,
        order: list[int],
        observations: Sequence[Observation],
        profiles: dict[str, UserProfile],
        per_event: list[list[Finding]],
    ) -> None:
        """Let retroactive detectors add findings to the batch's earlier events (a campaign
        recognised at its fifth attempt names the first four of the same batch too)."""
        judged = None
        for det in self.plain:
            if not det.retroactive:
                continue
            if judged is None:
                judged = [
                    (
                        observations[i],
                        profiles.get(observations[i].user_key or ""),
                        per_event[i],
                    )
                    for i in order
                ]
            try:
                added = det.revisit(judged)
            except Exception:  # one broken detector must not silence the others
                logger.exception("detector %s failed revisiting a batch", det.name)
                continue
            for k, found in added.items():
                per_event[order[k]].extend(found)
                apply_suppression(per_event[order[k]])

    # --- learning -------------------------------------------------------------------------
    def remember(
        self,
        obs: Observation,
        profile: UserProfile,
        context: Context,
        *,
        flagged: bool,
        risk: float = 0.0,
    ) -> None:
        """What a judged event leaves in its user's profile (``run`` and the replay of
        ``tracking train`` alike): it is noted; a successful login from a new network or
        country is marked novel; a successful event that was not flagged teaches, and one whose
        risk reached ``suspicious`` teaches its network and device but not its position."""
        profile.note(obs)
        features = context.features
        if (
            obs.type == "AUTH"
            and not obs.failed
            and (features["new_asn"] or features["new_country"])
        ):
            profile.mark_novel_login(obs)
        if not obs.failed and not flagged:
            context.suspicious = risk >= self.suspicious
            self.teach(obs, profile, context)

    def teach(self, obs: Observation, profile: UserProfile, context: Context) -> None:
        """Make the event's network, place and device known to the profile and the detectors."""
        detectors = self.plain
        profile.learn(obs)
        for det in detectors:
            det.update(obs, profile, context)
        if not any(d.locates for d in detectors):
            radius_ok = (obs.accuracy_radius or 0) <= DEFAULT_MAX_RADIUS_KM
            # An anonymizing exit's place is not the user's: it never becomes their position.
            if obs.city and radius_ok and not context.suspicious and not obs.network_kind:
                profile.set_location(obs)

    def dismiss(self, obs: Observation, profile: UserProfile, population: Population) -> None:
        """A reviewer dismissed the event's alert: it teaches (the same benign pattern stops
        firing) and the profile keeps the label."""
        ctx = Context(
            now=obs.timestamp, population=population, features=context_features(obs, profile)
        )
        self.teach(obs, profile, ctx)
        profile.label("dismissed", obs.id)

    def confirm(self, obs: Observation, profile: UserProfile) -> None:
        """A reviewer confirmed the attack: forget what the event taught and keep the label
        (``tracking train`` leaves confirmed attacks out)."""
        profile.forget(obs)
        profile.label("confirmed", obs.id)
