"""Celery task of ``TRACKING_DELIVERY = "celery"``: one delivery round (schedule it with beat
as well, so retries and closing alert groups do not wait for the next commit)."""

from __future__ import annotations

from celery import shared_task

from tracking.delivery.runner import DELIVER_TASK
from tracking.delivery.runner import deliver as deliver_round


@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver() -> dict[str, int]:
    report = deliver_round()
    return {"alerts_sent": report.alerts_sent, "forwarded": report.forwarded}
