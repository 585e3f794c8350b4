"""Declarative rules: a validated subset of Sigma YAML, evaluated without any I/O."""

from detectors.rules.engine import RuleEngine, ThresholdWindow
from detectors.rules.loader import (
    RuleError,
    load_rule_file,
    load_rules,
    parse_rule,
    parse_timespan,
    rule_files,
)
from detectors.rules.rule import STORED_FIELDS, Action, Rule, Threshold

__all__ = [
    "STORED_FIELDS",
    "Action",
    "Rule",
    "RuleEngine",
    "RuleError",
    "Threshold",
    "ThresholdWindow",
    "load_rule_file",
    "load_rules",
    "parse_rule",
    "parse_timespan",
    "rule_files",
]
