"""``{"backend": "http", "url": ..., "mode": "ndjson", "headers": {...}, "format": "ecs"}``:
batches of JSON lines POSTed to a collector.

``mode``:

- ``ndjson`` (default): one document per line (``application/x-ndjson``), e.g. Vector,
  Fluent Bit, Logstash's http input, Seq's raw ingestion;
- ``elasticsearch``: the bulk API (``.../_bulk``); each document is ``create``d with the
  activity id as ``_id``, so a batch delivered twice stores each document once (``index``
  names the index or data stream unless the URL does);
- ``splunk``: HTTP Event Collector (``.../services/collector/event``), events with ``time``;
  put ``{"Authorization": "Splunk <token>"}`` in ``headers``;
- ``loki``: the push API (``.../loki/api/v1/push``), one stream labelled ``labels``.

Any non-2xx answer (or an Elasticsearch item other than created/already there) fails the
batch, which is sent again later.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext as _

from tracking.delivery.http import DeliveryError, post, valid_url
from tracking.forwarding.message import Message

MODES = ("ndjson", "elasticsearch", "splunk", "loki")


class HttpTransport:
    json_only = True

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        if not valid_url(options.get("url")):
            problems.append(_('http needs "url", an http(s) URL'))
        if options.get("mode", "ndjson") not in MODES:
            problems.append(_("mode must be one of %(choices)s") % {"choices": ", ".join(MODES)})
        headers = options.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            problems.append(_("headers must be a dict of strings"))
        labels = options.get("labels", {})
        if not isinstance(labels, dict):
            problems.append(_("labels must be a dict of strings"))
        return problems

    def __init__(self, options: dict[str, Any]) -> None:
        self.url = options["url"]
        self.mode = options.get("mode", "ndjson")
        self.headers = dict(options.get("headers", {}))
        self.index = options.get("index")
        self.sourcetype = options.get("sourcetype", "_json")
        self.labels = {
            str(k): str(v) for k, v in (options.get("labels") or {"job": "django-tracking"}).items()
        }
        self.timeout = float(options.get("timeout", 10))

    def body(self, messages: list[Message]) -> tuple[bytes, str]:
        if self.mode == "elasticsearch":
            lines = []
            for m in messages:
                action: dict[str, Any] = {"_id": m.id}
                if self.index:
                    action["_index"] = self.index
                lines += [json.dumps({"create": action}), m.text]
            return ("\n".join(lines) + "\n").encode(), "application/x-ndjson"
        if self.mode == "splunk":
            lines = [
                f'{{"time":{m.timestamp.timestamp():.6f},"sourcetype":{json.dumps(self.sourcetype)},'
                f'"source":"django-activity-tracking","event":{m.text}}}'
                for m in messages
            ]
            return "\n".join(lines).encode(), "application/json"
        if self.mode == "loki":
            values = [[str(int(m.timestamp.timestamp() * 1_000_000_000)), m.text] for m in messages]
            doc = {"streams": [{"stream": self.labels, "values": values}]}
            return json.dumps(doc, ensure_ascii=False).encode(), "application/json"
        return ("\n".join(m.text for m in messages) + "\n").encode(), "application/x-ndjson"

    def send(self, messages: list[Message]) -> None:
        body, content_type = self.body(messages)
        answer = post(self.url, body, {"Content-Type": content_type, **self.headers}, self.timeout)
        if self.mode == "elasticsearch":
            self._check_bulk(answer)

    @staticmethod
    def _check_bulk(answer: bytes) -> None:
        try:
            doc = json.loads(answer or b"{}")
        except ValueError as exc:
            raise DeliveryError("Elasticsearch answered with something other than JSON") from exc
        if not doc.get("errors"):
            return
        for item in doc.get("items") or []:
            result: dict[str, Any] = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = int(result.get("status", 500))
            if not (200 <= status < 300 or status == 409):  # 409: stored by an earlier attempt
                raise DeliveryError(f"Elasticsearch refused a document (status {status})")
