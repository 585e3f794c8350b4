"""System checks for detection: detectors, rules and numbers (ids tracking.E050-E069, W050-W069)."""

from __future__ import annotations

from django.core import checks
from django.utils.translation import gettext as _

from detectors.orgnetworks import parse_trusted
from detectors.registry import ConfigError
from detectors.rules import RuleError, load_rules
from tracking.conf import tracking_settings
from tracking.detection.config import configured_detectors, rule_dirs


def detection_messages() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    detectors = []
    try:
        detectors = configured_detectors()
    except ConfigError as exc:
        errors.append(
            checks.Error(
                _("TRACKING_DETECTORS %(exc)s") % {"exc": exc},
                hint=_(
                    'Entries are ("dotted.path.DetectorClass", {params}) with the class\'s own '
                    "parameter names; None means the built-in set."
                ),
                id="tracking.E050",
            )
        )
    except (TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                _("TRACKING_DETECTORS is invalid: %(exc)s") % {"exc": exc}, id="tracking.E050"
            )
        )
    rule_dir_setting = tracking_settings.RULE_DIRS
    rules = []
    if not isinstance(rule_dir_setting, list | tuple):
        errors.append(
            checks.Error(_("TRACKING_RULE_DIRS must be a list of folders."), id="tracking.E052")
        )
    else:
        try:
            rules = load_rules(rule_dirs())
        except RuleError as exc:
            errors.append(
                checks.Error(
                    _("Invalid detection rule: %(exc)s") % {"exc": exc},
                    hint=_("Fix or remove the rule file; docs/rules.md describes the format."),
                    id="tracking.E051",
                )
            )
    threshold = tracking_settings.FLAG_THRESHOLD
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        errors.append(
            checks.Error(
                _("TRACKING_FLAG_THRESHOLD must be a number in [0, 1], got %(threshold)r.")
                % {"threshold": threshold},
                id="tracking.E053",
            )
        )
    if tracking_settings.RISK_COMBINE not in ("max", "noisy_or"):
        errors.append(
            checks.Error(
                _("TRACKING_RISK_COMBINE must be 'max' or 'noisy_or', got %(risk_combine)r.")
                % {"risk_combine": tracking_settings.RISK_COMBINE},
                id="tracking.E054",
            )
        )
    for name in ("HOSTING_ASNS", "MOBILE_ASNS"):
        value = getattr(tracking_settings, name)
        if not isinstance(value, list | tuple) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in value
        ):
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a list of AS numbers (integers).")
                    % {"name": name},
                    id="tracking.E055",
                )
            )
    if not isinstance(tracking_settings.BUILTIN_RULES, bool):
        errors.append(
            checks.Error(_("TRACKING_BUILTIN_RULES must be True or False."), id="tracking.E056")
        )
    try:
        parse_trusted(tracking_settings.TRUSTED_NETWORKS)
    except ValueError as exc:
        errors.append(
            checks.Error(
                _("TRACKING_TRUSTED_NETWORKS: %(error)s.") % {"error": exc},
                hint=_('Example: {"Head office": ["198.51.100.0/24", "AS64700"]}.'),
                id="tracking.E057",
            )
        )
    if detectors and rules:
        # A rule may silence a detector or another rule ("rule:<id>").
        names = {d.name for d in detectors} | {r.detector for r in rules}
        for rule in rules:
            unknown = [s for s in rule.action.suppress if s not in names]
            if unknown:
                errors.append(
                    checks.Warning(
                        _("Rule %(id)s (%(path)s) suppresses unconfigured detector(s): %(value)s.")
                        % {"id": rule.id, "path": rule.path, "value": ", ".join(unknown)},
                        id="tracking.W050",
                    )
                )
    return errors
