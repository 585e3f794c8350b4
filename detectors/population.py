"""Population statistics (how common a value is across all users), for the risk score.

The glue loads the counts a batch needs in one query (``keys_for``), the detectors read and
increment them in memory, and the glue writes the changed counts back in bulk (``changed``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

NAMESPACE = "risk"
TOTAL = "*"  # per-feature total of counted events
DISTINCT = "#"  # per-feature number of distinct values seen


@lru_cache(maxsize=65536)
def counter_key(feature: str, value: str) -> str:
    """Counter row key; long values (user agents) are hashed to stay within the column."""
    if len(value) > 120:
        value = "h:" + hashlib.blake2b(value.encode(), digest_size=12).hexdigest()
    return f"{feature}:{value}"


class Population:
    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = dict(counts or {})
        self._changed: set[str] = set()

    @staticmethod
    def keys_for(features: Iterable[tuple[str, str]]) -> set[str]:
        keys: set[str] = set()
        named: set[str] = set()  # a batch asks for thousands of values of a few features
        for feature, value in features:
            if feature not in named:
                named.add(feature)
                keys.add(counter_key(feature, TOTAL))
                keys.add(counter_key(feature, DISTINCT))
            if value:
                keys.add(counter_key(feature, value))
        return keys

    def count(self, feature: str, value: str) -> int:
        return self.counts.get(counter_key(feature, value), 0)

    def total(self, feature: str) -> int:
        return self.counts.get(counter_key(feature, TOTAL), 0)

    def distinct(self, feature: str) -> int:
        return self.counts.get(counter_key(feature, DISTINCT), 0)

    def add(self, feature: str, value: str) -> None:
        if not value:
            return
        key = counter_key(feature, value)
        if self.counts.get(key, 0) == 0:
            self._bump(counter_key(feature, DISTINCT))
        self._bump(key)
        self._bump(counter_key(feature, TOTAL))

    def set_once(self, feature: str, value: str, count: int) -> None:
        """Record ``count`` under (feature, value) unless a count is already there (a marker
        such as the first hour something was seen)."""
        key = counter_key(feature, value)
        if self.counts.get(key, 0) == 0:
            self.counts[key] = count
            self._changed.add(key)

    def put(self, feature: str, value: str, count: int) -> None:
        """Record ``count`` under (feature, value), replacing what was there: a detector's
        running state (a last-seen time, a moving average) rather than a tally."""
        key = counter_key(feature, value)
        self.counts[key] = count
        self._changed.add(key)

    def _bump(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self._changed.add(key)

    def changed(self) -> dict[str, int]:
        """Absolute counts of the keys incremented since loading."""
        return {k: self.counts[k] for k in self._changed}
