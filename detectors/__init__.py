"""The detection engine: detectors, declarative rules and the policy that turns their findings
into verdicts (:class:`Engine`), independent of Django.

Detectors follow a scikit-learn style (``__init__`` stores parameters, ``fit`` returns self,
learned state ends in ``_``) and judge one event with ``score(event, profile, context)`` without
touching a database, the network or the clock.
"""

from detectors.asn_change import AsnChange
from detectors.base import SEVERITY_RANK, Context, Detector, Finding, max_severity
from detectors.engine import Engine, Verdict
from detectors.features import context_features
from detectors.impossible_travel import ImpossibleTravel
from detectors.observation import Observation
from detectors.outliers import FEATURE_NAMES, IsolationForestDetector, feature_row
from detectors.population import Population
from detectors.profile import UserProfile
from detectors.registry import BUILTIN_DETECTORS, ConfigError, build, build_all
from detectors.risk import FreemanRiskScore
from detectors.rules import Rule, RuleEngine, RuleError, load_rule_file, load_rules, parse_rule

__all__ = [
    "BUILTIN_DETECTORS",
    "FEATURE_NAMES",
    "SEVERITY_RANK",
    "AsnChange",
    "ConfigError",
    "Context",
    "Detector",
    "Engine",
    "Finding",
    "FreemanRiskScore",
    "ImpossibleTravel",
    "IsolationForestDetector",
    "Observation",
    "Population",
    "Rule",
    "RuleEngine",
    "RuleError",
    "UserProfile",
    "Verdict",
    "build",
    "build_all",
    "context_features",
    "feature_row",
    "load_rule_file",
    "load_rules",
    "max_severity",
    "parse_rule",
]
