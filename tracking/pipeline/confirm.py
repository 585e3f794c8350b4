"""What the Celery hand-off published and has not yet seen stored.

A broker can lose a message it accepted. kombu's Redis transport takes a message off the
queue (``BRPOP``) before it records it as unacknowledged; a worker killed between the two
loses the batch and leaves no trace of it in Redis (``benchmarks/kill.py`` lost one batch in
4 of 9 runs this way). So a published event's journal line is released only once the
database holds the event, not when the broker took the message, and a batch the database
does not have after ``TRACKING_CELERY_CONFIRM_AFTER`` seconds is published again (``ingest``
skips what was stored meanwhile) or, after ``MAX_ATTEMPTS`` publications, stored by the
publishing process itself.

``Pending`` is that record: per batch the sealed message (to publish it again unchanged) and
the ids not yet seen stored. It does no I/O and reads time from an injectable clock;
``tracking.pipeline.handoff.Confirming`` asks the database and the broker and acts on it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Seconds after a publication before the database is first asked: most batches are stored
# by then, so one query releases many batches at once.
FIRST_CHECK = 2.0
# Seconds between later checks of a batch not stored yet (it waits in a backlog, or the
# broker lost it and it is not old enough to publish again).
RECHECK = 5.0
# Publications of one batch before the publishing process stores it itself.
MAX_ATTEMPTS = 3


@dataclass(eq=False)
class Batch:
    """One published message and the ids of its events not seen stored yet."""

    message: str
    ids: set[str]
    published: float  # clock time of the latest publication
    check_at: float
    attempts: int = 1
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.ids)


class Pending:
    """Published batches awaiting confirmation, oldest first; thread-safe.

    ``limit`` bounds the events held: beyond it the oldest batches are let go unconfirmed
    (``add`` returns their ids), trusting the broker as a plain publisher would."""

    def __init__(self, *, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.lock = threading.Lock()
        self.batches: deque[Batch] = deque()
        self.ids: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def holds(self, event_id: str) -> bool:
        return event_id in self.ids

    def add(self, ids: Iterable[str], message: str) -> list[str]:
        """Record a published batch; returns the ids let go to stay within ``limit``."""
        now = self.clock()
        batch = Batch(message, set(ids), now, now + FIRST_CHECK)
        dropped: list[str] = []
        with self.lock:
            self.batches.append(batch)
            self.ids |= batch.ids
            while len(self.ids) > self.limit and len(self.batches) > 1:
                old = self.batches.popleft()
                self.ids -= old.ids
                dropped.extend(old.ids)
        return dropped

    def due(self, *, everything: bool = False) -> list[Batch]:
        """The batches whose check is due (all of them with ``everything``)."""
        now = self.clock()
        with self.lock:
            return [b for b in self.batches if everything or b.check_at <= now]

    def stored(self, batch: Batch, found: set[str]) -> list[str]:
        """These ids of ``batch`` are in the database: forget them; returns them."""
        seen = [i for i in batch.ids if i in found]
        with self.lock:
            batch.ids.difference_update(seen)
            self.ids.difference_update(seen)
            if not batch.ids:
                self._remove(batch)
        return seen

    def overdue(self, batch: Batch, after: float) -> bool:
        """Published ``after`` seconds ago or longer and still not all stored."""
        return self.clock() - batch.published >= after

    def later(self, batch: Batch) -> None:
        batch.check_at = self.clock() + RECHECK

    def republished(self, batch: Batch) -> None:
        now = self.clock()
        batch.attempts += 1
        batch.published = now
        batch.check_at = now + FIRST_CHECK

    def forget(self, batch: Batch) -> list[str]:
        """Stop tracking ``batch`` (stored here, or let go); returns its remaining ids."""
        with self.lock:
            self.ids.difference_update(batch.ids)
            self._remove(batch)
        return list(batch.ids)

    def _remove(self, batch: Batch) -> None:
        try:
            self.batches.remove(batch)
        except ValueError:  # already let go by ``add``
            pass
