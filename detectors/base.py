"""The Detector interface, the context a scoring call receives and the findings it returns.

Nothing here touches a database, the network or the wall clock: the engine
(:class:`detectors.engine.Engine`) hands every detector an :class:`Observation`, the user's
:class:`~detectors.profile.UserProfile` and a :class:`Context` (the event's own timestamp,
population statistics, derived novelty) and turns what comes back into verdicts.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from detectors.observation import Observation
from detectors.population import Population
from detectors.profile import UserProfile

__all__ = [
    "SEVERITIES",
    "SEVERITY_RANK",
    "Context",
    "Detector",
    "Finding",
    "Observation",
    "check_number",
    "max_severity",
]

SEVERITIES: tuple[str, ...] = ("", "low", "medium", "high", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
# What a finding may ask to block (``Finding.block``): the event's address, its account, or
# the pair. Longest block a finding may request: 30 days.
BLOCK_SCOPES: tuple[str, ...] = ("address", "account", "address+account")
MAX_BLOCK_SECONDS = 30 * 86400


def block_request(scope: str, seconds: int) -> dict[str, Any]:
    """A validated ``Finding.block`` value (raises ValueError naming the problem)."""
    if scope not in BLOCK_SCOPES:
        raise ValueError(f"unknown block scope {scope!r} (allowed: {', '.join(BLOCK_SCOPES)})")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f"block seconds must be a whole number, got {seconds!r}")
    if not 1 <= seconds <= MAX_BLOCK_SECONDS:
        raise ValueError(f"block seconds must be from 1 to {MAX_BLOCK_SECONDS}, got {seconds}")
    return {"scope": scope, "seconds": seconds}


def median_of(values: list[int] | list[float]) -> float:
    """The median of a non-empty list (the mean of the two middle values for an even length)."""
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def max_severity(values: Any) -> str:
    best = ""
    for value in values:
        if SEVERITY_RANK.get(value, 0) > SEVERITY_RANK[best]:
            best = value
    return best


@dataclass(slots=True)
class Finding:
    """One explained verdict: who said it, the tag it adds, how sure (0..1) and why."""

    detector: str
    tag: str
    score: float
    severity: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    flag: bool = False
    suppressed: bool = False
    # Further tags the activity gets with this finding (a rule's action may add several).
    extra_tags: tuple[str, ...] = ()
    # Detector names whose findings on the same event this finding suppresses (rule actions).
    suppresses: tuple[str, ...] = ()
    # Block the event's source: ``block_request(scope, seconds)``; applied after detection.
    block: dict[str, Any] | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        return (self.tag, *self.extra_tags) if self.tag else self.extra_tags

    def __post_init__(self) -> None:
        score = float(self.score)
        # NaN would poison the combined risk score; treat it as "no signal".
        self.score = 0.0 if math.isnan(score) else min(1.0, max(0.0, score))
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}")
        self.reason = self.reason.replace("\n", " ")[:512]
        if self.block is not None:
            if not isinstance(self.block, dict):
                raise ValueError(f"block must be block_request(scope, seconds), got {self.block!r}")
            # block_request() checks both values and raises for anything but a valid pair.
            self.block = block_request(self.block.get("scope"), self.block.get("seconds"))  # type: ignore[arg-type]


@dataclass(slots=True)
class Context:
    """What a scoring call may know besides the event and the user's profile.

    ``now`` is the event's own timestamp (never the wall clock); ``features`` holds the novelty
    and rate values derived from the profile *before* this event was learned (see
    :func:`detectors.features.context_features`).
    """

    now: datetime
    population: Population | None = None
    features: dict[str, Any] = field(default_factory=dict)
    # Set by the glue when an event teaches although some finding scored it as suspicious
    # (below the flag threshold): detectors may then learn less from it (no new position).
    suspicious: bool = False


class Detector:
    """Base class in scikit-learn style.

    ``__init__`` only stores its keyword parameters (same names as attributes); ``fit``
    returns ``self`` and learned state ends in ``_``; ``score`` judges one event and must not
    touch a database, the network or the clock (``context.now`` is the event's own time).

    Optional capabilities are declared here with a harmless default, so the engine never has
    to guess what a detector can do:

    - ``update`` learns from an event that teaches (successful, not flagged);
    - ``note`` counts every event after it was judged (volumes, rates, site baselines);
    - ``population_keys`` names the population counters ``score`` and ``update`` read;
    - ``extend_networks`` receives the site's hosting / mobile-carrier AS numbers;
    - ``batched = True``: ``prepare`` one row per event, ``score_prepared`` all rows at once;
    - ``retroactive = True``: ``revisit`` adds findings to earlier events of the batch;
    - ``locates = True``: ``update`` keeps the user's last position (``profile.set_location``);
    - ``trainable = True``: state trained offline is stored under ``state_name()`` and
      installed with ``set_state`` (``state_meta`` is its JSON companion, ``clear_state``
      forgets it).
    """

    name: ClassVar[str] = ""
    tag: ClassVar[str] = ""
    # Batched detectors compute a feature row per event (``prepare``) during the pass over the
    # batch and score all rows at once at the end (``score_prepared``).
    batched: ClassVar[bool] = False
    # Whether ``update`` records the user's position; when no detector does, the engine keeps
    # the city-level position itself (the profile must still know the user's last place).
    locates: ClassVar[bool] = False
    # Whether the detector has state trained offline (``tracking train``) that is stored and
    # installed with ``set_state``.
    trainable: ClassVar[bool] = False
    # Whether ``revisit`` may add findings to the batch's earlier events once all were judged.
    retroactive: ClassVar[bool] = False

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Detector:
        valid = set(self.param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def validate(self) -> None:
        """Raise ``ValueError`` naming the parameter when a value is unusable."""

    def fit(self, X: Any = None, y: Any = None) -> Detector:
        return self

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if self.batched:
            return self.score_prepared([(event, self.prepare(event, profile, context))])[0]
        raise NotImplementedError

    # --- optional hooks (defaults do nothing) -------------------------------------------
    def update(self, event: Observation, profile: UserProfile, context: Context) -> None:
        """Learn from an event that teaches (successful, not flagged); default: nothing."""

    def note(self, event: Observation, profile: UserProfile | None, context: Context) -> None:
        """Count every event after it was judged, whether or not it teaches (rates, volumes,
        site-wide baselines); ``profile`` is None for events without one (a failed login on
        an unknown name). Default: nothing."""

    def population_keys(self, event: Observation) -> list[tuple[str, str]]:
        """The (feature, value) population counters judging ``event`` reads; default: none."""
        return []

    def extend_networks(self, hosting_asns: tuple[int, ...], mobile_asns: tuple[int, ...]) -> None:
        """Add the site's hosting and mobile-carrier AS numbers (``TRACKING_HOSTING_ASNS``,
        ``TRACKING_MOBILE_ASNS``) to the detector's own; default: not used."""

    def revisit(
        self, judged: list[tuple[Observation, UserProfile | None, list[Finding]]]
    ) -> dict[int, list[Finding]]:
        """``retroactive = True``: after the whole batch was judged (``judged``: each event in
        time order with its user's profile as the batch left it and its findings), further
        findings by position, e.g. on a campaign's first attempts that came before it was
        recognised later in the batch. Default: none."""
        return {}

    # --- batched detectors (``batched = True``) --------------------------------------------
    def prepare(self, event: Observation, profile: UserProfile | None, context: Context) -> Any:
        raise NotImplementedError

    def score_prepared(self, items: list[tuple[Observation, Any]]) -> list[list[Finding]]:
        raise NotImplementedError

    # --- trained state (``trainable = True``) --------------------------------------------
    def state_name(self) -> str:
        """Name the trained state is stored under; default: the detector's ``name``."""
        return self.name

    def state_meta(self) -> dict[str, Any]:
        """JSON-safe companion of the fitted estimator, stored next to it."""
        raise NotImplementedError

    def set_state(self, model: Any, meta: dict[str, Any]) -> Detector:
        """Install stored state (raise ``ValueError`` to refuse it)."""
        raise NotImplementedError

    def clear_state(self) -> None:
        """Forget installed state: the detector is silent again until the next model."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
