"""What a forwarder's transport sends: one formatted line and what it is about."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Message:
    kind: str  # "activity", "seal", "block_created", "block_lifted"
    id: str  # the activity id, "seal-<last seq>" or "block-<outbox id>"
    timestamp: datetime
    text: str  # the formatted line (JSON text for ecs/json)
    severity: str = ""
