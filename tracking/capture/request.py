"""What a request carries, read safely: headers, query, body — redacted and size-limited.

Bodies are parsed only when small enough (``MAX_BODY_BYTES``) and of a known kind (JSON,
form, multipart fields); anything else is recorded as a marker, never as raw text, so an
unparseable body cannot smuggle a secret past redaction. Invalid UTF-8 is decoded with
replacement characters.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, RawPostDataException

from tracking.conf import tracking_settings
from tracking.redaction import redact_headers, redact_params

_META_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def django_request(request: Any) -> HttpRequest:
    """The Django HttpRequest behind a DRF Request (or the request itself)."""
    return getattr(request, "_request", request)


@lru_cache(maxsize=1024)
def _header_name(key: str) -> str | None:
    if key.startswith("HTTP_"):
        return "-".join(p.capitalize() for p in key[5:].split("_"))
    return _META_HEADERS.get(key)


def headers_of(request: Any) -> dict[str, str]:
    meta = django_request(request).META
    raw: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(key, str):
            continue
        name = _header_name(key)
        if name is None:
            continue
        if value in (None, ""):
            continue
        raw[name] = value if isinstance(value, str) else str(value)
    return redact_headers(raw)


def _content_length(req: HttpRequest) -> int:
    try:
        return int(req.META.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return 0


def prepare(request: Any) -> None:
    """Read a small non-multipart body before the view, so it can still be recorded after
    a view (or DRF's parsers) consumed the stream. Django then serves the cached bytes."""
    req = django_request(request)
    if req.method in ("GET", "HEAD", "OPTIONS") and not _content_length(req):
        return
    ctype = (req.META.get("CONTENT_TYPE") or "").lower()
    if ctype.startswith("multipart/"):
        return
    if _content_length(req) > int(tracking_settings.MAX_BODY_BYTES):
        return
    try:
        req.body  # noqa: B018 - caches the body on the request
    except (RawPostDataException, OSError, Exception):  # recording never breaks a view
        return


def _querydict(qd) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in qd:
        values = qd.getlist(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


def body_of(request: Any) -> Any:
    """The request body as data (dict/list), a marker string, or None for no body."""
    req = django_request(request)
    length = _content_length(req)
    limit = int(tracking_settings.MAX_BODY_BYTES)
    ctype = (req.META.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if length > limit:
        return f"[body not recorded: {length} bytes > MAX_BODY_BYTES]"
    if ctype.startswith("multipart/"):
        try:
            data = _querydict(req.POST)
            files = {
                name: [{"name": f.name, "size": f.size} for f in req.FILES.getlist(name)]
                for name in req.FILES
            }
        except Exception:  # a broken upload is still recorded
            return "[body not recorded: unreadable multipart]"
        if files:
            data["_files"] = files
        return data
    raw = getattr(req, "_body", None)
    if raw is None and length == 0 and isinstance(req, WSGIRequest):
        # WSGI bodies are read up to Content-Length only: none declared, none there. (ASGI
        # bodies may come chunked without one, so they are read.)
        return None
    if raw is None:
        try:
            raw = req.body
        except RawPostDataException:
            # The view read the stream itself; a parsed DRF payload may still be there.
            full = getattr(request, "_full_data", None)
            if isinstance(full, dict | list):
                return full if isinstance(full, list) else dict(full)
            return "[body not recorded: stream consumed by the view]"
        except Exception:
            return "[body not recorded: unreadable]"
    if not raw:
        return None
    if len(raw) > limit:
        return f"[body not recorded: {len(raw)} bytes > MAX_BODY_BYTES]"
    if ctype == "application/x-www-form-urlencoded":
        try:
            return _querydict(req.POST)
        except Exception as exc:  # TooManyFieldsSent, RequestDataTooBig...
            return f"[body not recorded: {type(exc).__name__}]"
    if ctype.endswith("json") or ctype.endswith("+json"):
        try:
            return json.loads(raw.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return f"[body not recorded: invalid JSON, {len(raw)} bytes]"
    return f"[body not recorded: {ctype or 'no content type'}, {len(raw)} bytes]"


def params_of(request: Any) -> dict[str, Any]:
    """``{"query": {...}, "body": ...}`` (``body`` omitted when there is none), redacted."""
    req = django_request(request)
    try:
        # An empty query string needs no QueryDict (building one is a tenth of this call).
        has_query = "GET" in req.__dict__ or req.META.get("QUERY_STRING")
        query: Any = _querydict(req.GET) if has_query else {}
    except Exception as exc:  # e.g. TooManyFieldsSent: record that, not the data
        query = f"[query not recorded: {type(exc).__name__}]"
    params: dict[str, Any] = {"query": query}
    try:
        body = body_of(request)
    except Exception as exc:
        body = f"[body not recorded: {type(exc).__name__}]"
    if body is not None:
        params["body"] = body
    return redact_params(params)
