"""``{"backend": "slack", "url": "https://hooks.slack.com/services/..."}``: an incoming-webhook
message (text with Slack's escaping, so recorded values cannot inject links or mentions)."""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext_lazy as _

from tracking.alerts.messages import activity_line
from tracking.delivery.http import post, valid_url

MAX_LINES = 20


def escape(text: Any) -> str:
    """Slack's control characters in message text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(message: dict[str, Any]) -> str:
    lines = [f"*{escape(message['title'])}*"]
    if message["kind"] == "findings":
        items = message["activities"]
        for item in items[:MAX_LINES]:
            line = escape(activity_line(item))
            if item.get("link"):
                # Outside the f-string so that makemessages sees the marked text.
                details = escape(_("details"))
                line += f" <{escape(item['link'])}|{details}>"
            lines.append(line)
        if len(items) > MAX_LINES:
            lines.append(escape(_("… %(count)d more") % {"count": len(items) - MAX_LINES}))
    else:
        lines += [f"{escape(k)}: {escape(v)}" for k, v in sorted(message["block"].items())]
    return "\n".join(lines)


class SlackBackend:
    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        return (
            [] if valid_url(options.get("url")) else ['slack needs "url", the incoming webhook URL']
        )

    def __init__(self, options: dict[str, Any]) -> None:
        self.url = options["url"]
        self.timeout = float(options.get("timeout", 10))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"text": slack_text(message)}, ensure_ascii=False).encode()
        post(self.url, body, {"Content-Type": "application/json"}, self.timeout)
