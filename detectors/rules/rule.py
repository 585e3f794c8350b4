"""A compiled rule: field matchers, the condition, an optional threshold and the action."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Finding
from detectors.geo import parse_address

Getter = Callable[[str], Any]
Matcher = Callable[[Getter], bool]

# Columns stored on every activity: the only fields a threshold rule may use (they are
# re-read from the database for the look-back window).
STORED_FIELDS: frozenset[str] = frozenset(
    {
        "type",
        "username",
        "session_id",
        "ip_address",
        "isp",
        "asn",
        "country",
        "region",
        "city",
        "latitude",
        "longitude",
        "accuracy_radius",
        "network_kind",
        "device",
        "os",
        "browser",
        "is_mobile",
        "is_bot",
        "user_agent",
        "endpoint",
        "method",
        "status",
        "outcome",
        "duration",
    }
)
NUMERIC_FIELDS: frozenset[str] = frozenset(
    {"asn", "latitude", "longitude", "accuracy_radius", "status", "duration"}
)
MODIFIERS: frozenset[str] = frozenset(
    {"equals", "in", "startswith", "endswith", "contains", "cidr", "gt", "gte", "lt", "lte"}
)
LEVELS: dict[str, str] = {
    "informational": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
# Score of an unflagged rule finding by severity (a flagging rule scores at least FLAG_SCORE).
DEFAULT_SCORES: dict[str, float] = {"low": 0.2, "medium": 0.4, "high": 0.55, "critical": 0.65}
FLAG_SCORE = 0.9


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equals(actual: Any, expected: Any) -> bool:
    if expected is None:
        return actual is None or actual == ""
    if isinstance(expected, bool):
        return bool(actual) is expected if actual is not None else False
    if isinstance(expected, int | float):
        number = _as_number(actual)
        return number is not None and number == float(expected)
    if actual is None:
        return False
    return str(actual).lower() == str(expected).lower()


def build_matcher(name: str, modifier: str, values: list[Any]) -> Matcher:
    """A predicate on one field; several values mean "any of them" (Sigma's list semantics).
    A ``params.`` field holding a list matches when any of its items does (``params.fields``
    of an account change lists the fields changed)."""
    single = _scalar_matcher(name, modifier, values)
    if not name.startswith("params."):
        return single

    def any_item(get: Getter) -> bool:
        actual = get(name)
        if isinstance(actual, list | tuple):
            return any(single(_constant(item)) for item in actual)
        return single(get)

    return any_item


def _scalar_matcher(name: str, modifier: str, values: list[Any]) -> Matcher:
    if modifier in ("equals", "in"):
        if values and all(isinstance(v, str) for v in values):
            # the common case, as one set lookup
            wanted = frozenset(v.lower() for v in values)

            def text_equals(get: Getter) -> bool:
                actual = get(name)
                if actual is None or isinstance(actual, bool):
                    return False
                return (
                    actual.lower() if isinstance(actual, str) else str(actual).lower()
                ) in wanted

            return text_equals
        vals = tuple(values)
        return lambda get: any(_equals(get(name), v) for v in vals)
    if modifier in ("startswith", "endswith", "contains"):
        needles = tuple(str(v).lower() for v in values)

        def text_match(get: Getter) -> bool:
            actual = get(name)
            if actual is None:
                return False
            s = str(actual).lower()
            if modifier == "startswith":
                return any(s.startswith(n) for n in needles)
            if modifier == "endswith":
                return any(s.endswith(n) for n in needles)
            return any(n in s for n in needles)

        return text_match
    if modifier == "cidr":
        nets = tuple(ipaddress.ip_network(str(v), strict=False) for v in values)

        def cidr_match(get: Getter) -> bool:
            actual = get(name)
            addr = parse_address(str(actual)) if actual else None
            return addr is not None and any(addr.version == n.version and addr in n for n in nets)

        return cidr_match
    bounds = tuple(float(v) for v in values)
    compare = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }[modifier]

    def numeric_match(get: Getter) -> bool:
        actual = _as_number(get(name))
        return actual is not None and any(compare(actual, b) for b in bounds)

    return numeric_match


class _LazySelections(dict):
    __slots__ = ("selections", "get")

    def __init__(self, selections: dict[str, Matcher], get: Getter) -> None:
        super().__init__()
        self.selections = selections
        # The slot deliberately shadows dict.get: selections are resolved from the event getter.
        self.get = get  # type: ignore[method-assign,assignment]

    def __missing__(self, name: str) -> bool:
        value = self[name] = self.selections[name](self.get)
        return value


def _constant(value: Any) -> Getter:
    """A getter answering ``value`` for any name (one element of a list field)."""
    return lambda _name: value


@dataclass(slots=True)
class Threshold:
    count: int
    timespan: float  # seconds
    group_by: tuple[str, ...] = ()
    distinct: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return self.group_by + ((self.distinct,) if self.distinct else ())


@dataclass(slots=True)
class Action:
    flag: bool = False
    tags: tuple[str, ...] = ()
    severity: str = "medium"
    score: float = 0.4
    suppress: tuple[str, ...] = ()
    # ``action.block``: {"scope": ..., "seconds": ...} (see ``detectors.base.block_request``).
    block: dict[str, Any] | None = None


@dataclass(slots=True)
class Rule:
    id: str
    title: str
    path: str
    level: str
    selections: dict[str, Matcher]
    condition: Callable[[dict[str, bool]], bool]
    action: Action
    fields: frozenset[str]
    threshold: Threshold | None = None
    description: str = ""
    status: str = "experimental"
    sigma_tags: tuple[str, ...] = ()
    # Simple conditions usable as database pre-filters for the threshold look-back:
    # (field, op, values) with op in exact|in|gt|gte|lt|lte.
    prefilters: tuple[tuple[str, str, tuple], ...] = field(default_factory=tuple)
    # Upper-cased activity types the rule can match (None: any); lets the engine skip it.
    types: frozenset[str] | None = None

    @property
    def detector(self) -> str:
        return f"rule:{self.id}"[:64]

    @property
    def tag(self) -> str:
        return self.action.tags[0] if self.action.tags else self.id

    def matches(self, get: Getter) -> bool:
        # Selections are evaluated on demand, so "sel and ..." stops at the first miss.
        return self.condition(_LazySelections(self.selections, get))

    def finding(self, evidence: dict[str, Any], reason: str | None = None) -> Finding:
        return Finding(
            detector=self.detector,
            tag=self.tag,
            score=self.action.score,
            severity=self.action.severity,
            reason=reason or self.title,
            evidence={"rule": self.id, "title": self.title, **evidence},
            flag=self.action.flag,
            extra_tags=tuple(self.action.tags[1:]),
            suppresses=self.action.suppress,
            block=dict(self.action.block) if self.action.block else None,
        )
