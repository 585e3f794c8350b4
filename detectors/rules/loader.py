"""Load and validate rule files (a small subset of the Sigma format).

Every problem raises :class:`RuleError` naming the file and the key, e.g.
``rules/x.yml: detection.sel.status|regex: unknown modifier 'regex'``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from detectors.base import BLOCK_SCOPES, MAX_BLOCK_SECONDS, SEVERITIES, block_request
from detectors.features import context_features
from detectors.observation import Observation
from detectors.rules.condition import ConditionError, compile_condition, condition_gate
from detectors.rules.rule import (
    DEFAULT_SCORES,
    FLAG_SCORE,
    LEVELS,
    MODIFIERS,
    NUMERIC_FIELDS,
    STORED_FIELDS,
    Action,
    Rule,
    Threshold,
    build_matcher,
)

TOP_KEYS = frozenset(
    {
        "title",
        "id",
        "status",
        "description",
        "level",
        "tags",
        "detection",
        "threshold",
        "action",
        # informational Sigma keys, accepted and ignored
        "author",
        "date",
        "modified",
        "references",
        "falsepositives",
        "logsource",
        "fields",
        "license",
    }
)
REQUIRED = ("title", "id", "detection")
STATUSES = frozenset({"stable", "test", "experimental", "deprecated", "unsupported"})
THRESHOLD_KEYS = frozenset({"count", "timespan", "group_by", "distinct"})
ACTION_KEYS = frozenset({"flag", "tags", "severity", "suppress", "score", "block"})
BLOCK_KEYS = frozenset({"scope", "seconds"})
# A rule names a real severity (the scale of detectors.base without its empty "none").
RULE_SEVERITIES = frozenset(s for s in SEVERITIES if s)
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,56}$")
_TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_SPAN = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RuleError(ValueError):
    """An invalid rule: ``path`` and ``key`` say where."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


def context_field_names() -> frozenset[str]:
    return frozenset(
        context_features(Observation(timestamp=datetime(2000, 1, 1, tzinfo=timezone.utc)), None)
    )


_CTX_FIELDS = context_field_names()


def known_field(name: str) -> bool:
    if name in STORED_FIELDS:
        return True
    if name.startswith("ctx."):
        return name[4:] in _CTX_FIELDS
    if name.startswith("params.") and len(name) > 7:
        return True
    return name in ("id", "user_key")


def parse_timespan(value: Any) -> float:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _SPAN.match(str(value).strip())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a timespan like 30s, 10m, 24h or 7d")
    return float(int(m.group(1)) * _UNITS[m.group(2)])


def _type_gate(body: Any) -> frozenset[str] | None:
    """Types a selection can match: known when it is one mapping with a plain ``type`` test."""
    if not isinstance(body, dict):
        return None
    for key in ("type", "type|in", "type|equals"):
        value = body.get(key)
        values = value if isinstance(value, list) else [value]
        if value is not None and all(isinstance(v, str) for v in values):
            return frozenset(str(v).upper() for v in values)
    return None


def _selection(path: str, sel_name: str, body: Any, fields: set[str], prefilters: list) -> Any:
    key = f"detection.{sel_name}"
    maps = body if isinstance(body, list) else [body]
    if not maps or not all(isinstance(m, dict) and m for m in maps):
        raise RuleError(
            path,
            key,
            "a selection is a non-empty mapping of field[|modifier]: value (or a list of them)",
        )
    compiled = []
    for mapping in maps:
        matchers = []
        for raw_key, value in mapping.items():
            fkey = f"{key}.{raw_key}"
            if not isinstance(raw_key, str):
                raise RuleError(path, fkey, "field names are strings")
            fname, _, modifier = raw_key.partition("|")
            modifier = modifier or "equals"
            if modifier not in MODIFIERS:
                raise RuleError(
                    path,
                    fkey,
                    f"unknown modifier {modifier!r} (allowed: {', '.join(sorted(MODIFIERS))})",
                )
            if not known_field(fname):
                raise RuleError(path, fkey, f"unknown field {fname!r}")
            values = value if isinstance(value, list) else [value]
            if modifier == "in" and not isinstance(value, list):
                raise RuleError(path, fkey, "'in' needs a list of values")
            if not values:
                raise RuleError(path, fkey, "empty value list")
            for v in values:
                if isinstance(v, dict | list):
                    raise RuleError(path, fkey, f"value {v!r} must be a scalar")
                if modifier in ("gt", "gte", "lt", "lte") and (
                    isinstance(v, bool) or not isinstance(v, int | float)
                ):
                    raise RuleError(path, fkey, f"{modifier} needs a number, got {v!r}")
                if modifier == "cidr":
                    try:
                        ipaddress.ip_network(str(v), strict=False)
                    except ValueError:
                        raise RuleError(path, fkey, f"{v!r} is not a network (CIDR)") from None
                if modifier in ("startswith", "endswith", "contains") and v is None:
                    raise RuleError(path, fkey, f"{modifier} needs a text value")
            fields.add(fname)
            matchers.append(build_matcher(fname, modifier, values))
            if len(maps) == 1 and fname in STORED_FIELDS:
                _add_prefilter(prefilters, sel_name, fname, modifier, values)
        m = tuple(matchers)
        compiled.append(lambda get, m=m: all(f(get) for f in m))
    if len(compiled) == 1:
        return compiled[0]
    alts = tuple(compiled)
    return lambda get: any(f(get) for f in alts)


def _add_prefilter(out: list, sel: str, fname: str, modifier: str, values: list) -> None:
    # Only exact, case-stable comparisons become SQL filters; everything is re-checked in Python.
    if modifier in ("gt", "gte", "lt", "lte") and fname in NUMERIC_FIELDS:
        out.append((sel, fname, modifier, tuple(values)))
    elif (
        modifier in ("equals", "in")
        and fname in NUMERIC_FIELDS
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ):
        out.append((sel, fname, "in", tuple(values)))
    elif (
        modifier in ("equals", "in")
        and fname in ("type", "method", "outcome", "network_kind")
        and all(isinstance(v, str) for v in values)
    ):
        out.append(
            (sel, fname, "in", tuple({v for x in values for v in (x, x.upper(), x.lower())}))
        )


def parse_rule(doc: Any, path: str = "<rule>") -> Rule:
    if not isinstance(doc, dict):
        raise RuleError(path, "", "a rule file holds one mapping")
    for key in doc:
        if key not in TOP_KEYS:
            raise RuleError(path, str(key), f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in REQUIRED:
        if key not in doc:
            raise RuleError(path, key, "required key is missing")
    title = doc["title"]
    if not isinstance(title, str) or not title.strip():
        raise RuleError(path, "title", "must be a non-empty string")
    rule_id = str(doc["id"])
    if not _ID.match(rule_id):
        raise RuleError(
            path, "id", f"{rule_id!r}: use letters, digits, '-', '_', '.', ':' (max 56)"
        )
    status = doc.get("status", "experimental")
    if status not in STATUSES:
        raise RuleError(path, "status", f"unknown status {status!r}")
    level = doc.get("level", "medium")
    if level not in LEVELS:
        raise RuleError(path, "level", f"unknown level {level!r} (allowed: {', '.join(LEVELS)})")
    sigma_tags = doc.get("tags", []) or []
    if not isinstance(sigma_tags, list) or not all(isinstance(t, str) for t in sigma_tags):
        raise RuleError(path, "tags", "must be a list of strings")
    description = doc.get("description", "") or ""
    if not isinstance(description, str):
        raise RuleError(path, "description", "must be a string")

    detection = doc["detection"]
    if not isinstance(detection, dict):
        raise RuleError(path, "detection", "must be a mapping of selections and a condition")
    if "condition" not in detection:
        raise RuleError(path, "detection.condition", "required key is missing")
    fields: set[str] = set()
    prefilters: list = []
    selections = {}
    for name, body in detection.items():
        if name == "condition":
            continue
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise RuleError(path, f"detection.{name}", "selection names are identifiers")
        selections[name] = _selection(path, name, body, fields, prefilters)
    if not selections:
        raise RuleError(path, "detection", "needs at least one selection")
    try:
        condition, used = compile_condition(detection["condition"], list(selections))
    except ConditionError as exc:
        raise RuleError(path, "detection.condition", str(exc)) from None
    gates = {name: _type_gate(body) for name, body in detection.items() if name != "condition"}
    type_gate = condition_gate(detection["condition"], list(selections), gates)

    threshold = None
    if doc.get("threshold") is not None:
        threshold = _threshold(path, doc["threshold"], fields)
    action = _action(path, doc.get("action") or {}, LEVELS[level])
    # Pre-filters are safe only when the condition is a single positive selection (optionally
    # "and not ..."): then every matching row satisfies that selection.
    cond = str(detection["condition"]).split()
    usable = None
    if len(cond) == 1 and cond[0] in selections:
        usable = cond[0]
    elif (
        len(cond) >= 3
        and cond[0] in selections
        and cond[1].lower() == "and"
        and cond[2].lower() == "not"
    ):
        if "or" not in [c.lower() for c in cond]:
            usable = cond[0]
    pre = tuple((f, op, vals) for sel, f, op, vals in prefilters if sel == usable)
    return Rule(
        id=rule_id,
        title=title.strip(),
        path=path,
        level=level,
        selections=selections,
        condition=condition,
        action=action,
        fields=frozenset(fields),
        threshold=threshold,
        description=description,
        status=status,
        sigma_tags=tuple(sigma_tags),
        prefilters=pre,
        types=type_gate,
    )


def _threshold(path: str, body: Any, fields: set[str]) -> Threshold:
    if not isinstance(body, dict):
        raise RuleError(
            path, "threshold", "must be a mapping with count, timespan, group_by, distinct"
        )
    for key in body:
        if key not in THRESHOLD_KEYS:
            raise RuleError(
                path,
                f"threshold.{key}",
                f"unknown key (allowed: {', '.join(sorted(THRESHOLD_KEYS))})",
            )
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RuleError(path, "threshold.count", f"must be a positive integer, got {count!r}")
    if "timespan" not in body:
        raise RuleError(path, "threshold.timespan", "required key is missing")
    try:
        span = parse_timespan(body["timespan"])
    except ValueError as exc:
        raise RuleError(path, "threshold.timespan", str(exc)) from None
    group_by = body.get("group_by", []) or []
    if isinstance(group_by, str):
        group_by = [group_by]
    if not isinstance(group_by, list):
        raise RuleError(path, "threshold.group_by", "must be a list of field names")
    for g in group_by:
        if g not in STORED_FIELDS:
            raise RuleError(path, "threshold.group_by", f"{g!r} is not a stored field")
    distinct = body.get("distinct")
    if distinct is not None and distinct not in STORED_FIELDS:
        raise RuleError(path, "threshold.distinct", f"{distinct!r} is not a stored field")
    for f in fields:
        if f not in STORED_FIELDS:
            # The look-back window is re-read from the database, where only columns exist.
            raise RuleError(
                path, "threshold", f"threshold rules may only use stored fields, not {f!r}"
            )
    return Threshold(count=count, timespan=span, group_by=tuple(group_by), distinct=distinct)


def _action(path: str, body: Any, default_severity: str) -> Action:
    if not isinstance(body, dict):
        raise RuleError(path, "action", "must be a mapping")
    for key in body:
        if key not in ACTION_KEYS:
            raise RuleError(
                path, f"action.{key}", f"unknown key (allowed: {', '.join(sorted(ACTION_KEYS))})"
            )
    flag = body.get("flag", False)
    if not isinstance(flag, bool):
        raise RuleError(path, "action.flag", "must be true or false")
    tags = body.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
        raise RuleError(
            path, "action.tags", "must be a list of tags (letters, digits, '-', '_', '.', ':')"
        )
    severity = body.get("severity", default_severity)
    if severity not in RULE_SEVERITIES:
        raise RuleError(path, "action.severity", f"unknown severity {severity!r}")
    suppress = body.get("suppress", []) or []
    if not isinstance(suppress, list) or not all(isinstance(s, str) and s for s in suppress):
        raise RuleError(path, "action.suppress", "must be a list of detector names")
    default_score = max(FLAG_SCORE, DEFAULT_SCORES[severity]) if flag else DEFAULT_SCORES[severity]
    score = body.get("score", default_score)
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise RuleError(path, "action.score", f"must be a number in [0, 1], got {score!r}")
    block = _block(path, body["block"]) if body.get("block") is not None else None
    return Action(
        flag=flag,
        tags=tuple(tags),
        severity=severity,
        score=float(score),
        suppress=tuple(suppress),
        block=block,
    )


def _block(path: str, body: Any) -> dict[str, Any]:
    """``action.block: {scope: address | account | address+account, seconds: N}``."""
    if not isinstance(body, dict):
        raise RuleError(
            path, "action.block", "must be a mapping like {scope: address, seconds: 3600}"
        )
    for key in body:
        if key not in BLOCK_KEYS:
            raise RuleError(
                path,
                f"action.block.{key}",
                f"unknown key (allowed: {', '.join(sorted(BLOCK_KEYS))})",
            )
    for key in ("scope", "seconds"):
        if key not in body:
            raise RuleError(path, f"action.block.{key}", "required key is missing")
    scope, seconds = body["scope"], body["seconds"]
    if scope not in BLOCK_SCOPES:
        raise RuleError(
            path,
            "action.block.scope",
            f"unknown scope {scope!r} (allowed: {', '.join(BLOCK_SCOPES)})",
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise RuleError(
            path, "action.block.seconds", f"must be a positive whole number, got {seconds!r}"
        )
    if seconds > MAX_BLOCK_SECONDS:
        raise RuleError(
            path, "action.block.seconds", f"at most {MAX_BLOCK_SECONDS} (30 days), got {seconds}"
        )
    return block_request(scope, seconds)


def load_rule_file(path: str | Path) -> Rule:
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(p, "", f"cannot read ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(p, "", f"invalid YAML ({exc})") from None
    return parse_rule(doc, p)


def rule_files(directory: str | Path) -> list[Path]:
    d = Path(directory)
    return sorted(list(d.glob("*.yml")) + list(d.glob("*.yaml")))


def load_rules(directories: Iterable[str | Path]) -> list[Rule]:
    """Every rule of the folders, in file-name order; the first invalid file raises."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for directory in directories:
        if not Path(directory).is_dir():
            raise RuleError(str(directory), "", "rule folder does not exist")
        for f in rule_files(directory):
            rule = load_rule_file(f)
            if rule.id in seen:
                raise RuleError(
                    str(f), "id", f"duplicate rule id {rule.id!r} (also in {seen[rule.id]})"
                )
            seen[rule.id] = str(f)
            rules.append(rule)
    return rules
