"""Build the configured detectors from ``TRACKING_DETECTORS``-style entries.

An entry is ``("dotted.path.Class", {params})``, a bare ``"dotted.path.Class"``, or
``{"class": "dotted.path.Class", "params": {...}}``. Problems raise :class:`ConfigError` with
the entry's index and path, so the system check can name it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from detectors.base import Detector

BUILTIN_DETECTORS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("detectors.impossible_travel.ImpossibleTravel", {}),
    ("detectors.asn_change.AsnChange", {}),
    ("detectors.session.SessionHijack", {}),
    ("detectors.anonymous_network.AnonymousNetwork", {}),
    ("detectors.volume.VolumeBaseline", {}),
    ("detectors.breach.BreachedPassword", {}),
    ("detectors.campaign.FailureCampaign", {}),
    ("detectors.traits.CampaignTraits", {}),
    ("detectors.risk.FreemanRiskScore", {}),
    ("detectors.outliers.IsolationForestDetector", {}),
)


class ConfigError(ValueError):
    def __init__(self, index: int, path: str, message: str) -> None:
        self.index = index
        self.path = path
        self.message = message
        super().__init__(f"entry {index} ({path or '?'}): {message}")


def normalise(entry: Any, index: int) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict):
        unknown = set(entry) - {"class", "params"}
        if unknown or "class" not in entry:
            raise ConfigError(
                index, str(entry.get("class", "")), 'use {"class": "dotted.path", "params": {...}}'
            )
        path, params = entry["class"], entry.get("params") or {}
    elif isinstance(entry, list | tuple) and len(entry) in (1, 2):
        path = entry[0]
        params = entry[1] if len(entry) == 2 and entry[1] is not None else {}
    else:
        raise ConfigError(index, "", f'expected ("dotted.path", {{params}}), got {entry!r}')
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(index, str(path), "the detector must be a dotted path to a class")
    if not isinstance(params, dict):
        raise ConfigError(index, path, f"parameters must be a dict, got {type(params).__name__}")
    return path, params


def import_class(path: str, index: int = 0) -> type:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(index, path, f"cannot import module {module_name!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            index, path, f"module {module_name!r} has no attribute {attr!r}"
        ) from None


def build(entry: Any, index: int = 0) -> Detector:
    path, params = normalise(entry, index)
    cls = import_class(path, index)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise ConfigError(index, path, "is not a detectors.base.Detector subclass")
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            index,
            path,
            f"unknown parameter(s) {', '.join(unknown)} (valid: {', '.join(valid) or 'none'})",
        )
    try:
        detector = cls(**params)
        detector.validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(index, path, f"invalid parameter: {exc}") from None
    if not cls.name:
        raise ConfigError(index, path, "the class must set a `name`")
    return detector


def build_all(entries: Iterable[Any] | None) -> list[Detector]:
    """The detectors for a setting value (None = the built-in set with defaults)."""
    if entries is None:
        entries = BUILTIN_DETECTORS
    if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
        raise ConfigError(0, "", "TRACKING_DETECTORS must be a list of entries or None")
    detectors = [build(e, i) for i, e in enumerate(entries)]
    names: dict[str, int] = {}
    for i, d in enumerate(detectors):
        if d.name in names:
            raise ConfigError(
                i,
                type(d).__name__,
                f"duplicate detector name {d.name!r} (also entry {names[d.name]})",
            )
        names[d.name] = i
        if not d.batched:
            d.fit()  # derive the learned lookup state (parsed networks, sets) once
    return detectors
