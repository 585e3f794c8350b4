"""OpenAPI schema (drf-spectacular) at api/tracking/schema/ and the docs page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/tracking/activities/": {"get"},
    "/api/tracking/activities/{id}/": {"get"},
    "/api/tracking/activities/{id}/delete/": {"delete"},
    "/api/tracking/activities/{id}/flag/": {"patch"},
    "/api/tracking/stats/": {"get"},
    "/api/tracking/activities/export/": {"get"},
}
FILTERS = {
    "type",
    "user",
    "username",
    "ip_address",
    "country",
    "city",
    "asn",
    "flagged",
    "tags",
    "tags_all",
    "status",
    "status_class",
    "method",
    "endpoint",
    "endpoint_prefix",
    "review_status",
    "severity",
    "duration_min",
    "duration_max",
    "since",
    "until",
    "search",
    "detector",
    "ordering",
}


@pytest.fixture
def schema(staff_client):
    resp = staff_client.get("/api/tracking/schema/", {"format": "json"})
    assert resp.status_code == 200
    return resp.json()


def test_every_endpoint_is_documented(schema):
    paths = schema["paths"]
    for path, methods in ENDPOINTS.items():
        key = path.replace("{id}", "{pk}") if path.replace("{id}", "{pk}") in paths else path
        assert key in paths, (path, sorted(paths))
        assert methods <= set(paths[key]), (path, paths[key].keys())


def _params(op):
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}


def test_every_filter_is_documented(schema):
    paths = schema["paths"]
    assert FILTERS <= _params(paths["/api/tracking/activities/"]["get"])
    assert {"page", "page_size", "cursor"} <= _params(paths["/api/tracking/activities/"]["get"])
    assert FILTERS <= _params(paths["/api/tracking/stats/"]["get"])
    assert FILTERS | {"format"} <= _params(paths["/api/tracking/activities/export/"]["get"])


def test_responses_are_documented(schema):
    comps = schema["components"]["schemas"]
    list_op = schema["paths"]["/api/tracking/activities/"]["get"]
    page_ref = list_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split(
        "/"
    )[-1]
    page = comps[page_ref]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])
    item = comps["ActivityList"]["properties"]
    assert {
        "id",
        "timestamp",
        "type",
        "type_display",
        "user",
        "ip_address",
        "endpoint",
        "status",
        "duration",
    } <= set(item)
    stats = comps["Stats"]["properties"]
    assert {"counts", "response_times", "types"} <= set(stats)
    assert "findings" in comps["Activity"]["properties"]


def test_schema_generates_without_warnings_or_errors():
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    from tracking import urls

    ours = {
        "activity-list",
        "activity-export",
        "activity-detail",
        "activity-delete",
        "activity-flag",
        "stats",
        "schema",
    }
    patterns = [p for p in urls.urlpatterns if getattr(p, "name", None) in ours]
    assert len(patterns) == len(ours)
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/tracking/", include((patterns, "tracking")))])
    with GENERATOR_STATS.silence():
        generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, list(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, list(GENERATOR_STATS._error_cache)


def test_docs_page_renders(staff_client):
    resp = staff_client.get("/api/tracking/docs/")
    assert resp.status_code == 200
    assert b"/api/tracking/schema/" in resp.content
    # Served from the package (drf-spectacular-sidecar), never a CDN: works offline.
    assert b"drf_spectacular_sidecar/swagger-ui-dist" in resp.content
    assert b"cdn." not in resp.content and b"jsdelivr" not in resp.content


def test_redoc_page_is_served_locally(staff_client):
    resp = staff_client.get("/api/tracking/redoc/")
    assert resp.status_code == 200
    assert b"drf_spectacular_sidecar/redoc" in resp.content and b"cdn." not in resp.content


def test_error_responses_are_documented(schema):
    paths = schema["paths"]
    assert {"400", "403", "429"} <= set(paths["/api/tracking/activities/"]["get"]["responses"])
    flag = [k for k in paths if k.endswith("/flag/")][0]
    assert {"200", "400", "403", "404"} <= set(paths[flag]["patch"]["responses"])
    export = paths["/api/tracking/activities/export/"]["get"]["responses"]
    assert {"text/csv", "application/json", "application/x-ndjson"} <= set(export["200"]["content"])


def test_schema_is_json_by_default_and_yaml_on_request(staff_client, api_client):
    import yaml

    resp = api_client.get("/api/tracking/schema/")
    assert resp.status_code == 200
    assert resp.json()["openapi"].startswith("3.")
    resp = staff_client.get("/api/tracking/schema/", {"format": "yaml"})
    assert yaml.safe_load(resp.content)["paths"]


def test_schema_works_with_drfs_default_schema_class(staff_client, settings):
    settings.REST_FRAMEWORK = {
        k: v for k, v in settings.REST_FRAMEWORK.items() if k != "DEFAULT_SCHEMA_CLASS"
    }
    resp = staff_client.get("/api/tracking/schema/", {"format": "json"})
    assert resp.status_code == 200
    assert "/api/tracking/activities/" in resp.json()["paths"]
