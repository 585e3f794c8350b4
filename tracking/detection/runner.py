"""Detection of one batch of activities: load what the engine reads, store what it decides.

``detect_batch(activities)`` receives unsaved, enriched and redacted ``Activity`` instances of
one batch, in timestamp order, inside the writer's transaction. Per batch it makes a handful of
queries, whatever the batch size:

1. the profiles of every user in the batch (one ``IN`` query), the population counters the
   risk score needs (one query) and the organisation-network candidates (one query, only
   for a batch with a successful login of a known user: nothing else can teach a network;
   the trusted networks themselves are re-read at most every few seconds);
2. per group of threshold rules sharing pre-filters, the stored rows of their look-back window
   (``tracking.detection.prefilter``);
3. the latest trained-model version (at most every few seconds; the model is reloaded only when
   it changes: ``tracking.detection.modelstore``).

The engine (``detectors.engine.Engine``) judges the batch; its verdicts are merged into the
activities (tags added, the higher risk and severity kept, flagged activities opened for
review), its findings become ``Finding`` rows, and the profiles and counters it changed are
written back in bulk.
"""

from __future__ import annotations

from detectors.base import SEVERITY_RANK, max_severity
from detectors.base import Finding as DetectorFinding
from detectors.engine import Verdict
from detectors.orgnetworks import NetworkLearner
from detectors.population import NAMESPACE, Population
from tracking.detection import config, modelstore, orgnetworks, prefilter
from tracking.detection import profiles as store
from tracking.detection.observations import observation
from tracking.gcpause import gc_paused
from tracking.models import Activity, Finding, ReviewStatus


def detect_batch(activities: list[Activity], *, learn_only: bool = False) -> list[Finding]:
    """Judge one batch (see the module docstring); returns unsaved ``Finding`` rows.

    ``learn_only``: run no detector and no rule (``config.LEARN_ONLY``), so profiles learn
    from the batch but no new verdict is made (restoring exported records with the verdict
    they were written with)."""
    if not activities:
        return []
    with gc_paused():
        return _detect_batch(activities, config.LEARN_ONLY if learn_only else config.pipeline())


def _detect_batch(activities: list[Activity], pipe: config.Pipeline) -> list[Finding]:
    modelstore.refresh_models(pipe)
    engine = config.engine(pipe)
    trusted = orgnetworks.trusted()
    observations = [observation(a, trusted=trusted) for a in activities]
    profiles = store.load_profiles(o.user_key for o in observations if o.user_key)
    epochs = [o.epoch for o in observations]
    # The learner's stored candidates matter only to a successful login of a known user
    # (``NetworkLearner.evidence``); other batches skip the read (a query per batch).
    if any(o.type == "AUTH" and not o.failed and o.user_key for o in observations):
        learner = orgnetworks.load_learner(min(epochs))
    else:
        learner = NetworkLearner()
    keys = engine.population_keys(observations, learner)
    population = Population(store.load_counters(NAMESPACE, keys))
    history = prefilter.threshold_history(pipe.rules, activities)
    verdicts = engine.run(observations, profiles, population, history, learner)

    rows: list[Finding] = []
    for act, verdict in zip(activities, verdicts, strict=True):
        if not verdict.findings:
            continue
        apply_verdict(act, verdict)
        rows.extend(finding_row(act, f) for f in verdict.findings)
    store.save_profiles(profiles.values())
    changed = population.changed()
    if changed:
        store.save_counters(NAMESPACE, changed)
    orgnetworks.save_learner(learner, max(epochs))
    return rows


def apply_verdict(act: Activity, verdict: Verdict) -> None:
    """Merge a verdict into the activity: what it already carried (an imported verdict, a
    capture-time tag) is kept; flagging opens it for review unless a reviewer decided."""
    act.tags = sorted(set(act.tags or []) | verdict.tags)
    act.risk_score = round(max(float(act.risk_score or 0.0), verdict.risk), 6)
    sev = max_severity([act.severity or "", verdict.severity])
    act.severity = sev if SEVERITY_RANK.get(sev, 0) else (act.severity or "")
    if verdict.flagged and not act.flagged:
        act.flagged = True
        if act.review_status not in (ReviewStatus.CONFIRMED, ReviewStatus.DISMISSED):
            act.review_status = str(ReviewStatus.OPEN)


def finding_row(act: Activity, f: DetectorFinding) -> Finding:
    evidence = dict(f.evidence)
    if f.extra_tags:
        evidence.setdefault("tags", list(f.tags))
    if f.suppresses:
        evidence.setdefault("suppresses", list(f.suppresses))
    if f.block:
        # Read by tracking.respond.actions after detection (the block is made there).
        evidence.setdefault("block", dict(f.block))
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
