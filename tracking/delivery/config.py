"""``TRACKING_ALERTS`` and ``TRACKING_FORWARDERS``: parsed, validated and their backends loaded
once (by dotted path) per process, again only when a setting changes.

A backend is a class built with the entry's options (a dict). Alert backends have
``send(message: dict)``; forwarder transports have ``send(messages: list[Message])``; both
raise on failure and may offer ``validate(options) -> list[str]`` (problems, reported as system
checks by ``tracking.checks.check_alerts_forwarding``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from detectors.base import SEVERITY_RANK
from tracking.conf import on_reload, tracking_settings

ALERT_BACKENDS = {
    "webhook": "tracking.alerts.webhook.WebhookBackend",
    "slack": "tracking.alerts.slack.SlackBackend",
    "email": "tracking.alerts.mail.EmailBackend",
}
FORWARD_BACKENDS = {
    "syslog": "tracking.forwarding.syslog.SyslogTransport",
    "http": "tracking.forwarding.http.HttpTransport",
    "logging": "tracking.forwarding.pylogging.LoggingTransport",
}
FORMATS = {
    "cef": "tracking.forwarding.formats.CefFormat",
    "ecs": "tracking.forwarding.formats.EcsFormat",
    "json": "tracking.forwarding.formats.JsonFormat",
}
DEFAULT_FORMAT = {"syslog": "cef", "http": "ecs", "logging": "json"}

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIOD = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """One invalid entry of TRACKING_ALERTS / TRACKING_FORWARDERS (the message says which)."""


@dataclass(frozen=True)
class Channel:
    """One alert channel of ``TRACKING_ALERTS``."""

    name: str
    backend: Any
    min_severity: str = "medium"
    types: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    group_seconds: float = 300.0
    rate: tuple[int, int] | None = None  # (messages, seconds)
    max_attempts: int = 8
    retry_seconds: float = 10.0
    blocks: bool = True

    @property
    def state_name(self) -> str:
        return f"alert:{self.name}"

    def wants(self, severity: str, type_: str, tags: list[str]) -> bool:
        """Whether an activity of this severity, type and tags is alerted on this channel."""
        if SEVERITY_RANK.get(severity or "", 0) < SEVERITY_RANK.get(self.min_severity, 0):
            return False
        if self.types and type_ not in self.types:
            return False
        return not self.tags or bool(self.tags.intersection(tags or []))


@dataclass(frozen=True)
class Forwarder:
    """One forwarder of ``TRACKING_FORWARDERS``: a transport and a format."""

    name: str
    transport: Any
    format: Any
    batch_size: int = 500
    retry_seconds: float = 5.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def state_name(self) -> str:
        return f"forward:{self.name}"


def parse_rate(value: Any) -> tuple[int, int] | None:
    """``"30/min"`` → (30, 60); None or "" → no limit; anything else raises ConfigError."""
    if value in (None, ""):
        return None
    match = _RATE.match(str(value)) if isinstance(value, str) else None
    if not match or int(match.group(1)) < 1:
        raise ConfigError(
            _('rate_limit must look like "30/min" (per s, min, hour or day), got %(value)r')
            % {"value": value}
        )
    return int(match.group(1)), _PERIOD[match.group(2)[0]]


def _number(entry: dict, key: str, default: float, *, minimum: float = 0) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(
            _("%(key)s must be a number ≥ %(minimum)s, got %(value)r")
            % {"key": key, "minimum": minimum, "value": value}
        )
    return value


def _strings(entry: dict, key: str) -> frozenset[str]:
    value = entry.get(key) or []
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            _("%(key)s must be a list of strings, got %(value)r") % {"key": key, "value": value}
        )
    return frozenset(value)


def _names(entries: list, setting: str) -> list[str]:
    if not isinstance(entries, list | tuple):
        raise ConfigError(
            _("%(setting)s must be a list of dicts, got %(type)s")
            % {"setting": setting, "type": type(entries).__name__}
        )
    names = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("backend"), str):
            raise ConfigError(
                _('%(setting)s[%(index)d] must be a dict with a "backend", got %(entry)r')
                % {"setting": setting, "index": i, "entry": entry}
            )
        names.append(str(entry.get("name") or entry["backend"]))
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                _(
                    '%(setting)s has two entries named %(name)r: give each a distinct "name" '
                    "(it keys the entry's delivery position)"
                )
                % {"setting": setting, "name": name}
            )
    return names


def _backend(path: str, entry: dict, builtin: dict[str, str], what: str) -> Any:
    dotted = builtin.get(path, path)
    try:
        cls = import_string(dotted)
    except ImportError as exc:
        raise ConfigError(
            _("%(what)s %(path)r cannot be imported: %(exc)s")
            % {"what": what, "path": path, "exc": exc}
        ) from exc
    problems = cls.validate(entry) if hasattr(cls, "validate") else []
    if problems:
        raise ConfigError("; ".join(problems))
    return cls(entry)


def build_channel(entry: dict, name: str) -> Channel:
    severity = entry.get("min_severity", "medium")
    if severity not in SEVERITY_RANK or not severity:
        raise ConfigError(
            _("min_severity must be one of low, medium, high, critical, got %(value)r")
            % {"value": severity}
        )
    attempts = int(_number(entry, "max_attempts", 8, minimum=1))
    return Channel(
        name=name,
        backend=_backend(entry["backend"], entry, ALERT_BACKENDS, "alert backend"),
        min_severity=severity,
        types=_strings(entry, "types"),
        tags=_strings(entry, "tags"),
        group_seconds=float(_number(entry, "group_seconds", 300)),
        rate=parse_rate(entry.get("rate_limit", "30/min")),
        max_attempts=attempts,
        retry_seconds=float(_number(entry, "retry_seconds", 10)),
        blocks=bool(entry.get("blocks", True)),
    )


def build_forwarder(entry: dict, name: str) -> Forwarder:
    fmt = entry.get("format") or DEFAULT_FORMAT.get(entry["backend"], "json")
    if fmt not in FORMATS:
        raise ConfigError(
            _("format must be one of %(choices)s, got %(value)r")
            % {"choices": ", ".join(FORMATS), "value": fmt}
        )
    transport = _backend(entry["backend"], entry, FORWARD_BACKENDS, "forwarder backend")
    if getattr(transport, "json_only", False) and fmt == "cef":
        raise ConfigError(
            _('backend %(backend)r sends JSON documents: use "ecs" or "json"')
            % {"backend": entry["backend"]}
        )
    return Forwarder(
        name=name,
        transport=transport,
        format=import_string(FORMATS[fmt])(),
        batch_size=int(_number(entry, "batch_size", 500, minimum=1)),
        retry_seconds=float(_number(entry, "retry_seconds", 5)),
        options=dict(entry),
    )


def problems() -> list[tuple[str, str]]:
    """Every configuration problem as ``(setting, message)``, for the system checks."""
    found: list[tuple[str, str]] = []
    for setting, entries, build in (
        ("TRACKING_ALERTS", tracking_settings.ALERTS, build_channel),
        ("TRACKING_FORWARDERS", tracking_settings.FORWARDERS, build_forwarder),
    ):
        try:
            names = _names(entries or [], setting)
        except ConfigError as exc:
            found.append((setting, str(exc)))
            continue
        for i, (entry, name) in enumerate(zip(entries, names, strict=True)):
            try:
                build(entry, name)
            except ConfigError as exc:
                found.append(
                    (
                        setting,
                        _("%(setting)s[%(index)d] (%(name)s): %(problem)s")
                        % {"setting": setting, "index": i, "name": name, "problem": exc},
                    )
                )
    if tracking_settings.DELIVERY not in ("thread", "celery", "manual"):
        found.append(
            (
                "TRACKING_DELIVERY",
                _('TRACKING_DELIVERY must be "thread", "celery" or "manual", got %(value)r')
                % {"value": tracking_settings.DELIVERY},
            )
        )
    return found


_loaded: dict[str, list] = {}


def _load(setting: str, entries: Any, build) -> list:
    if setting not in _loaded:
        items = []
        try:
            names = _names(entries or [], setting)
        except ConfigError:
            names = []  # reported by the system check; nothing is delivered meanwhile
        for entry, name in zip(entries or [], names, strict=False):
            try:
                items.append(build(entry, name))
            except ConfigError:
                continue  # reported by the system check
        _loaded[setting] = items
    return _loaded[setting]


def channels() -> list[Channel]:
    """The valid entries of ``TRACKING_ALERTS`` (invalid ones are reported by the checks)."""
    return _load("ALERTS", tracking_settings.ALERTS, build_channel)


def forwarders() -> list[Forwarder]:
    """The valid entries of ``TRACKING_FORWARDERS``."""
    return _load("FORWARDERS", tracking_settings.FORWARDERS, build_forwarder)


def configured() -> bool:
    """Whether anything consumes the outbox (no entry is written otherwise)."""
    return bool(tracking_settings.ALERTS or tracking_settings.FORWARDERS)


@on_reload
def _forget() -> None:
    for forwarder in _loaded.get("FORWARDERS", []):
        close = getattr(forwarder.transport, "close", None)
        if close is not None:
            close()  # e.g. a syslog TCP connection
    _loaded.clear()
