"""What a request carries (tracking.capture.request): the shortcuts for requests without a
query string or a declared body give the same record as reading them."""

from __future__ import annotations

from io import BytesIO

from django.core.handlers.asgi import ASGIRequest
from django.test import RequestFactory

from tracking.capture.request import body_of, params_of


def test_get_without_query_or_body():
    request = RequestFactory().get("/x")
    assert params_of(request) == {"query": {}}
    assert "GET" not in request.__dict__  # no QueryDict was built for an empty query string


def test_query_string_is_recorded_and_redacted():
    request = RequestFactory().get("/x", {"page": "2", "token": "abc"})
    assert params_of(request) == {"query": {"page": "2", "token": "[REDACTED]"}}


def test_query_already_parsed_by_the_view_is_used():
    request = RequestFactory().get("/x")
    request.GET = request.GET.copy()
    request.GET["added"] = "1"
    assert params_of(request)["query"] == {"added": "1"}


def test_wsgi_body_without_content_length_is_none():
    request = RequestFactory().generic("POST", "/x", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    assert body_of(request) is None


def test_asgi_body_without_content_length_is_still_read():
    """ASGI bodies may arrive chunked without a Content-Length: they are read, not assumed
    empty."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    request = ASGIRequest(scope, BytesIO(b'{"amount": 5, "password": "pw"}'))
    assert "CONTENT_LENGTH" not in request.META
    assert params_of(request)["body"] == {"amount": 5, "password": "[REDACTED]"}
