"""Detection configuration: the detectors, rules and engine numbers the settings describe.

``pipeline()`` builds the configured detectors (``TRACKING_DETECTORS``) and rules (the built-in
pack and ``TRACKING_RULE_DIRS``) once per process and again after a tracking setting changes;
``engine()`` wraps them with the current ``TRACKING_FLAG_THRESHOLD`` and ``TRACKING_RISK_COMBINE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import detectors.rulepack as rulepack

from detectors.base import Detector
from detectors.engine import Engine
from detectors.registry import build_all
from detectors.rules import Rule, load_rules
from tracking.conf import on_reload, tracking_settings


def builtin_rule_dir() -> Path:
    return Path(rulepack.__file__).resolve().parent


def rule_dirs() -> list[str]:
    dirs = [str(builtin_rule_dir())] if tracking_settings.BUILTIN_RULES else []
    dirs.extend(str(d) for d in tracking_settings.RULE_DIRS or [])
    return dirs


def configured_detectors() -> list[Detector]:
    """Build the detectors of ``TRACKING_DETECTORS`` (raises ``detectors.ConfigError``)."""
    detectors = build_all(tracking_settings.DETECTORS)
    hosting = tuple(tracking_settings.HOSTING_ASNS or [])
    mobile = tuple(tracking_settings.MOBILE_ASNS or [])
    if hosting or mobile:
        for d in detectors:
            d.extend_networks(hosting, mobile)
    return detectors


@dataclass
class Pipeline:
    detectors: list[Detector]
    rules: list[Rule]
    # trained-model versions currently installed, by detector name
    versions: dict[str, int | None] = field(default_factory=dict)


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    """The configured detectors and rules, built once (cleared when a setting changes)."""
    return Pipeline(detectors=configured_detectors(), rules=load_rules(rule_dirs()))


on_reload(pipeline.cache_clear)

# No detector and no rule: profiles still learn, no verdict is made (``detect_batch``'s
# ``learn_only``, ``ingest(detect=False)``).
LEARN_ONLY = Pipeline(detectors=[], rules=[], versions={})


def engine(pipe: Pipeline | None = None) -> Engine:
    """The detection engine over ``pipe`` (the configured pipeline by default) with the
    current flag threshold and risk combination."""
    pipe = pipe or pipeline()
    return Engine(
        pipe.detectors,
        pipe.rules,
        flag_threshold=tracking_settings.FLAG_THRESHOLD,
        risk_combine=tracking_settings.RISK_COMBINE,
    )
