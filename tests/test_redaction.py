"""Redaction of sensitive keys everywhere; visible truncation; depth limits."""

from __future__ import annotations

from django.test import override_settings

from tracking.redaction import (
    DEPTH_MARKER,
    REDACTED,
    is_sensitive,
    redact_headers,
    redact_mapping,
    redact_params,
    truncate,
)


def test_default_and_builtin_keys():
    for key in [
        "password",
        "newPassword",
        "X-Auth-Token",
        "client_secret",
        "PASSWORD",
        "Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "Proxy-Authorization",
        "card_number",
        "cardNumber",
        "cc",
        "cvv",
        "cvc",
        "pan",
        "api_key",
    ]:
        assert is_sensitive(key), key
    for key in ["username", "access", "company", "expand", "account", "amount", "next"]:
        assert not is_sensitive(key), key


def test_nested_json_any_depth_case_insensitive():
    data = {"user": {"Profile": [{"PassWord": "x", "name": "n"}, {"tokens": ["a"]}]}, "q": 1}
    out = redact_mapping(data)
    assert out["user"]["Profile"][0] == {"PassWord": REDACTED, "name": "n"}
    assert out["user"]["Profile"][1]["tokens"] == REDACTED
    assert out["q"] == 1


@override_settings(SENSITIVE_FIELDS=["ssn", "mother_maiden"])
def test_configured_fields_extend_builtins():
    out = redact_mapping({"ssn": "1", "motherMaiden": "2", "password": "3", "name": "n"})
    assert out == {"ssn": REDACTED, "motherMaiden": REDACTED, "password": REDACTED, "name": "n"}


def test_headers():
    out = redact_headers({"Authorization": "Bearer x", "Cookie": "sessionid=abc", "Accept": "*/*"})
    assert out == {"Authorization": REDACTED, "Cookie": REDACTED, "Accept": "*/*"}


@override_settings(TRACKING_MAX_HEADER_LENGTH=10)
def test_oversized_values_truncated_with_marker_idempotent():
    out = redact_headers({"User-Agent": "a" * 25})
    assert out["User-Agent"] == "a" * 10 + "…[truncated 15 chars]"
    assert redact_headers(out) == out
    assert truncate(out["User-Agent"], 10) == out["User-Agent"]


@override_settings(TRACKING_MAX_JSON_DEPTH=3)
def test_depth_marker():
    deep = {"a": {"b": {"c": {"d": {"note": "hidden-value"}}}}}
    out = redact_mapping(deep)
    assert out["a"]["b"]["c"] == DEPTH_MARKER
    assert "hidden-value" not in str(out)


@override_settings(TRACKING_MAX_PARAMS_LENGTH=200)
def test_params_document_limited():
    out = redact_params({"query": {"q": "v"}, "body": {"blob": "z" * 5000}})
    assert out["query"] == {"q": "v"}
    assert isinstance(out["body"], str) and "…[truncated" in out["body"]
    assert len(out["body"]) < 200
    assert redact_params(out) == out


def test_non_json_values_never_raise():
    out = redact_mapping({"b": b"\xff\xfe", "o": object(), "t": (1, 2), "n": None})
    assert out["b"] == "\ufffd\ufffd" and out["t"] == [1, 2] and out["n"] is None
    assert isinstance(out["o"], str)


@override_settings(TRACKING_MAX_PARAMS_LENGTH=1000)
def test_params_limit_counts_json_escaping():
    import json

    # 200 control characters are 1200 characters of JSON: over the limit although short.
    out = redact_params({"query": {}, "body": {"c": "\x01" * 200}})
    assert isinstance(out["body"], str) and "…[truncated" in out["body"]
    small = redact_params({"query": {}, "body": {"c": "\x01" * 100}})
    assert small["body"] == {"c": "\x01" * 100}
    assert len(json.dumps(small, ensure_ascii=False)) <= 1000
