"""Who delivers: ``deliver()`` runs one round for every alert channel and forwarder.

``TRACKING_DELIVERY``:

- ``"thread"`` (default): a daemon thread per process, started by the first commit that has
  something to tell, runs a round when woken by a commit and every ``TRACKING_DELIVERY_INTERVAL``
  seconds (retries, grouping windows that close). Leases keep two processes from delivering
  for the same consumer at once.
- ``"celery"``: a commit queues the task ``tracking.tasks.deliver`` (give it a beat schedule
  too, for retries and closing groups).
- ``"manual"``: only ``manage.py tracking forward`` (run it from cron or a supervisor).

Never on the request path: a commit only sets an event (or publishes a task).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError, connections
from django.db.models import Min
from django.utils import timezone

from tracking.alerts import dispatch as alert_dispatch
from tracking.conf import tracking_settings
from tracking.delivery import config, outbox
from tracking.forwarding import dispatch as forward_dispatch
from tracking.models import DeliveryState, PendingAlert

DELIVER_TASK = "tracking.tasks.deliver"

logger = logging.getLogger("tracking.delivery")

MIN_WAIT = 0.05  # seconds: the shortest sleep between rounds


@dataclass
class RoundReport:
    alerts_sent: int = 0
    forwarded: int = 0
    failures: list[str] = field(default_factory=list)
    # When the earliest waiting work is due (a group closing, a retry), if any.
    next_due: datetime | None = None


def deliver(now: datetime | None = None) -> RoundReport:
    """One delivery round: fold new entries into alert groups, send what is due, forward
    every new activity, block and seal head, then prune consumed outbox entries."""
    now = now or timezone.now()
    report = RoundReport()
    names = []
    for channel in config.channels():
        names.append(channel.state_name)
        try:
            sent, error = alert_dispatch.run(channel, now)
        except Exception as exc:  # one broken channel never stops the others
            logger.exception("alert channel %s failed", channel.name)
            sent, error = 0, f"{type(exc).__name__}: {exc}"
        report.alerts_sent += sent
        if error:
            report.failures.append(f"{channel.name}: {error}")
    for forwarder in config.forwarders():
        names.append(forwarder.state_name)
        try:
            sent, error = forward_dispatch.run(forwarder, now)
        except Exception as exc:
            logger.exception("forwarder %s failed", forwarder.name)
            sent, error = 0, f"{type(exc).__name__}: {exc}"
        report.forwarded += sent
        if error:
            report.failures.append(f"{forwarder.name}: {error}")
    try:
        outbox.prune(names)
        report.next_due = _next_due([c.name for c in config.channels()], names)
    except DatabaseError:
        logger.warning("pruning the outbox failed; retried next round", exc_info=True)
    return report


def _next_due(channels: list[str], names: list[str]) -> datetime | None:
    """The earliest time a pending alert or a backing-off consumer is due."""
    times = []
    if channels:
        pending = PendingAlert.objects.filter(
            channel__in=channels, status=PendingAlert.Status.PENDING
        )
        times.append(pending.aggregate(m=Min("send_after"))["m"])
        times.append(pending.aggregate(m=Min("next_attempt"))["m"])
    if names:
        times.append(
            DeliveryState.objects.filter(name__in=names).aggregate(m=Min("next_attempt"))["m"]
        )
    found = [t for t in times if t is not None]
    return min(found) if found else None


class DeliveryThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.event = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="tracking-delivery", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wait = float(tracking_settings.DELIVERY_INTERVAL)
        while not self.stopping:
            self.event.wait(wait)
            self.event.clear()
            if self.stopping:
                break
            wait = float(tracking_settings.DELIVERY_INTERVAL)
            try:
                report = deliver()
            except Exception:  # e.g. the database is down: next round
                logger.exception("delivery round failed")
            else:
                if report.next_due is not None:
                    # A group closing or a retry due before the next interval: wake for it.
                    due = (report.next_due - timezone.now()).total_seconds()
                    wait = min(wait, max(due, MIN_WAIT))
            finally:
                # This thread's connection would otherwise stay open between rounds.
                connections.close_all()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping = True
        self.event.set()
        self.thread.join(timeout)


_thread: DeliveryThread | None = None
_thread_lock = threading.Lock()
_last_task = [0.0]


def wake() -> None:
    """Something was committed: deliver soon, off the caller's path."""
    mode = tracking_settings.DELIVERY
    if mode == "celery":
        if time.monotonic() - _last_task[0] < 1.0:
            return  # one task per second is enough: a round takes everything pending
        _last_task[0] = time.monotonic()
        try:
            from celery import current_app  # Celery is optional

            # By its registered name (tracking.delivery.tasks defines it over this module).
            current_app.tasks[DELIVER_TASK].apply_async(queue=tracking_settings.CELERY_QUEUE)
        except Exception:  # the periodic task or `tracking forward` catches up
            logger.warning("could not queue the delivery task", exc_info=True)
        return
    if mode != "thread":
        return
    global _thread
    with _thread_lock:
        if _thread is None or _thread.pid != os.getpid() or not _thread.thread.is_alive():
            _thread = DeliveryThread()
    _thread.event.set()


def shutdown(timeout: float = 5.0) -> None:
    """Stop this process's delivery thread (tests; interpreter exit)."""
    global _thread
    with _thread_lock:
        current, _thread = _thread, None
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)


def _after_fork_in_child() -> None:
    global _thread, _thread_lock
    _thread = None
    _thread_lock = threading.Lock()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)
