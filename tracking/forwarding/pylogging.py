"""``{"backend": "logging", "logger": "tracking.forward", "format": "json"}``: each line to a
Python logger, for sites whose logging handlers (or OpenTelemetry) already ship logs. The
record's ``extra`` carries ``tracking_id`` and ``tracking_kind``."""

from __future__ import annotations

import logging
from typing import Any

from django.utils.translation import gettext as _

from tracking.forwarding.message import Message

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LoggingTransport:
    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        if not isinstance(options.get("logger", "tracking.forward"), str):
            problems.append(_('logging needs "logger", a logger name'))
        if options.get("level", "INFO") not in LEVELS:
            problems.append(_("level must be one of %(choices)s") % {"choices": ", ".join(LEVELS)})
        return problems

    def __init__(self, options: dict[str, Any]) -> None:
        self.logger = logging.getLogger(options.get("logger", "tracking.forward"))
        self.level = getattr(logging, options.get("level", "INFO"))

    def send(self, messages: list[Message]) -> None:
        for m in messages:
            self.logger.log(
                self.level, m.text, extra={"tracking_id": m.id, "tracking_kind": m.kind}
            )
