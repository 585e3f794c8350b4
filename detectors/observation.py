"""The event as detectors and rules see it: a flat, read-only snapshot of one activity.

Its own module so that the profile (which learns from observations) and the detector interface
(which receives both) depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
