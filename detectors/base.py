"""The Detector interface, the plain event detectors see, and the findings they return.

Nothing here touches a database, the network or the wall clock: ``tracking.detection.runner`` builds an
:class:`Observation` from each activity, hands in the user's :class:`~detectors.profile.UserProfile`
and a :class:`Context` (the event's own timestamp, population statistics, derived novelty), and
stores what comes back.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from detectors.population import Population
    from detectors.profile import UserProfile

SEVERITIES: tuple[str, ...] = ("", "low", "medium", "high", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


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


@dataclass(slots=True)
class Observation:
    """The event as the detectors and rules see it (a flat, read-only snapshot of an activity)."""

    timestamp: datetime
    type: str = ""
    id: str = ""
    user_key: str | None = None
    username: str = ""
    session_id: str = ""
    ip_address: str | None = None
    isp: str = ""
    asn: int | None = None
    country: str = ""
    region: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    accuracy_radius: int | None = None
    device: str = ""
    os: str = ""
    browser: str = ""
    is_mobile: bool = False
    is_bot: bool = False
    user_agent: str = ""
    endpoint: str = ""
    method: str = ""
    status: int | None = None
    # "success", "failure" or "" (unknown: the status decides, >= 400 is a failure).
    outcome: str = ""
    duration: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # POSIX seconds of ``timestamp``, computed once (read on every comparison).
    epoch: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.epoch = self.timestamp.timestamp()
        if not self.outcome and self.status is not None:
            # Nothing said otherwise: the status decides, as when the event was stored.
            self.outcome = "failure" if self.status >= 400 else "success"

    @property
    def failed(self) -> bool:
        """A failed attempt (a wrong password answered with 200 is one)."""
        return self.outcome == "failure"

    @property
    def device_key(self) -> str:
        """Device identity at family level, so a browser update is not a "new device"."""
        if not (self.device or self.os or self.browser):
            return ""
        return f"{self.device}|{self.os}|{self.browser}"

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def get(self, name: str) -> Any:
        """Field value by rule name (``params.rows`` reaches into params)."""
        if name.startswith("params."):
            value: Any = self.params or {}
            for part in name.split(".")[1:]:
                value = value.get(part) if isinstance(value, dict) else None
            return value
        return getattr(self, name, None)


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
    touch a database, the network or the clock.
    """

    name: ClassVar[str] = ""
    tag: ClassVar[str] = ""
    # Batched detectors compute a feature row per event (``prepare``) during the pass over the
    # batch and score all rows at once at the end (``score_prepared``).
    batched: ClassVar[bool] = False

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

    def update(self, event: Observation, profile: UserProfile, context: Context) -> None:
        """Learn from an event that teaches (successful, not flagged); default: nothing."""

    def prepare(self, event: Observation, profile: UserProfile | None, context: Context) -> Any:
        raise NotImplementedError

    def score_prepared(self, items: list[tuple[Observation, Any]]) -> list[list[Finding]]:
        raise NotImplementedError

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
