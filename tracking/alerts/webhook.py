"""``{"backend": "webhook", "url": ..., "secret": ...}``: the message as a JSON POST.

The receiver checks origin and freshness: ``X-Tracking-Signature: sha256=<hex HMAC-SHA256 of
the raw body with the channel's secret>`` and ``X-Tracking-Timestamp: <Unix seconds>`` (also
in the signed body as ``sent_at``, so it cannot be altered without breaking the signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import Any

from django.utils.translation import gettext as _

from tracking.delivery.http import post, valid_url

UTC = timezone.utc

SIGNATURE_HEADER = "X-Tracking-Signature"
TIMESTAMP_HEADER = "X-Tracking-Timestamp"


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-Tracking-Signature`` for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookBackend:
    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        if not valid_url(options.get("url")):
            problems.append(_('webhook needs "url", an http(s) URL'))
        secret = options.get("secret")
        if not isinstance(secret, str) or not secret:
            problems.append(_('webhook needs "secret", a string (it signs each body)'))
        return problems

    def __init__(self, options: dict[str, Any]) -> None:
        self.url = options["url"]
        self.secret = options["secret"]
        self.timeout = float(options.get("timeout", 10))

    def send(self, message: dict[str, Any]) -> None:
        now = time.time()
        doc = {**message, "sent_at": datetime.fromtimestamp(int(now), UTC).isoformat()}
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        post(
            self.url,
            body,
            {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self.secret, body),
                TIMESTAMP_HEADER: str(int(now)),
                "User-Agent": "django-activity-tracking",
            },
            self.timeout,
        )
