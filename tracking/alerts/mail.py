"""``{"backend": "email", "recipients": ["soc@example.com"]}``: Django's mail (its
``EMAIL_*`` settings); ``from_email`` defaults to ``DEFAULT_FROM_EMAIL``."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMessage

from tracking.alerts.messages import text


class EmailBackend:
    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        recipients = options.get("recipients")
        if (
            not isinstance(recipients, list | tuple)
            or not recipients
            or not all(isinstance(r, str) and "@" in r for r in recipients)
        ):
            return ['email needs "recipients", a list of addresses']
        return []

    def __init__(self, options: dict[str, Any]) -> None:
        self.recipients = list(options["recipients"])
        self.from_email = options.get("from_email")

    def send(self, message: dict[str, Any]) -> None:
        subject = " ".join(message["title"].split())[:200]
        EmailMessage(subject, text(message), self.from_email, self.recipients).send()
