"""System checks of the capture settings (tracking.E160-E169): TRACKING_AUTH_SIGNALS,
TRACKING_PATHS, TRACKING_ACCOUNT_CHANGES, TRACKING_ACCOUNT_FIELDS, TRACKING_CHANGE_MODELS;
and TRACKING_TRUSTED_PROXIES (tracking.E010, reported by ``tracking.checks.check_recording``)."""

from __future__ import annotations

from django.apps import apps
from django.core import checks
from django.utils.translation import gettext as _

from tracking.capture.clientip import parse_networks
from tracking.capture.paths import entry_problems
from tracking.conf import CHECKS_TAG, tracking_settings


@checks.register(CHECKS_TAG)
def check_capture(app_configs=None, **kwargs):
    errors = []
    if not isinstance(tracking_settings.AUTH_SIGNALS, bool):
        errors.append(
            checks.Error(
                _("TRACKING_AUTH_SIGNALS must be True or False, got %(value)r.")
                % {"value": tracking_settings.AUTH_SIGNALS},
                hint=_("True records Django's login, failed-login and logout signals."),
                id="tracking.E161",
            )
        )
    for problem in entry_problems(tracking_settings.PATHS):
        errors.append(
            checks.Error(
                _("TRACKING_PATHS: %(problem)s.") % {"problem": problem},
                hint=_(
                    'Entries look like {"path": r"^/accounts/login/$", "type": "AUTH", '
                    '"methods": ["POST"], "async": False}; the middleware records nothing until '
                    "the setting is valid."
                ),
                id="tracking.E160",
            )
        )
    if not isinstance(tracking_settings.ACCOUNT_CHANGES, bool):
        errors.append(
            checks.Error(
                _("TRACKING_ACCOUNT_CHANGES must be True or False, got %(value)r.")
                % {"value": tracking_settings.ACCOUNT_CHANGES},
                hint=_("True records changes of accounts, groups and permissions."),
                id="tracking.E164",
            )
        )
    fields = tracking_settings.ACCOUNT_FIELDS
    if not isinstance(fields, list | tuple) or not all(isinstance(f, str) for f in fields):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_ACCOUNT_FIELDS must be a list of user model field names, got %(value)r."
                )
                % {"value": fields},
                id="tracking.E162",
            )
        )
    errors.extend(_change_model_errors(tracking_settings.CHANGE_MODELS))
    return errors


def _change_model_errors(value) -> list[checks.CheckMessage]:
    hint = _('A dict {"app_label.Model": ["field", ...]}.')
    if not isinstance(value, dict):
        return [
            checks.Error(
                _("TRACKING_CHANGE_MODELS must be a dict, got %(type)s.")
                % {"type": type(value).__name__},
                hint=hint,
                id="tracking.E163",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for label, names in value.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError, TypeError):
            errors.append(
                checks.Error(
                    _("TRACKING_CHANGE_MODELS: %(label)r is not an installed model.")
                    % {"label": label},
                    hint=hint,
                    id="tracking.E163",
                )
            )
            continue
        concrete = {f.name for f in model._meta.concrete_fields}
        if not isinstance(names, list | tuple) or not names:
            errors.append(
                checks.Error(
                    _("TRACKING_CHANGE_MODELS[%(label)r] must be a non-empty list of field names.")
                    % {"label": label},
                    hint=hint,
                    id="tracking.E163",
                )
            )
            continue
        unknown = [n for n in names if n not in concrete]
        if unknown:
            errors.append(
                checks.Error(
                    _("TRACKING_CHANGE_MODELS[%(label)r]: %(model)s has no field(s) %(unknown)s.")
                    % {"label": label, "model": label, "unknown": unknown},
                    hint=_("Fields of %(model)s: %(fields)s.")
                    % {"model": label, "fields": ", ".join(sorted(concrete))},
                    id="tracking.E163",
                )
            )
    return errors


def trusted_proxy_messages() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    _nets, bad = parse_networks(tracking_settings.TRUSTED_PROXIES)
    if bad:
        errors.append(
            checks.Error(
                _("TRACKING_TRUSTED_PROXIES has invalid entries: %(value)s.")
                % {"value": ", ".join(map(repr, bad))},
                hint=_("Use CIDRs such as '10.0.0.0/8' or single addresses such as '192.0.2.1'."),
                id="tracking.E010",
            )
        )
    return errors
