"""Finding 7: export filenames come from parsed values only; every malformed date is a 400."""

from __future__ import annotations

import pytest

from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db
URL = "/api/tracking/activities/export/"

MALFORMED = [
    '2024W01"10',
    "2024W01\n10",
    "2024-01-01\r\n10:00",
    "2024-01-01T10:00\x00",
    '2024-01-01"',
    "2024-01-01T10:00:00; filename=evil.exe",
    "2024-13-01",
    "2024-02-30",
    "2024-01-01T25:00",
    "20240101",
    "2024-W01-1",
    "+2024-01-01",
    "9999-12-31T23:59:59+99:99",
]


@pytest.mark.parametrize("param", ["since", "until"])
@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_dates_are_400_naming_the_field(staff_client, param, value):
    make_activity()
    resp = staff_client.get(URL, {param: value})
    assert resp.status_code == 400, (value, resp.status_code)
    assert param in resp.json()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"since": "2024-01-01", "until": "2024-01-31"}, "activities_2024-01-01_2024-01-31.csv"),
        (
            {"since": "2024-01-01T10:00:00Z", "until": "2024-01-02 11:30+01:00", "format": "json"},
            "activities_20240101T100000Z_20240102T103000Z.json",
        ),
        ({"since": "2024-01-01T10:00", "format": "ndjson"}, None),
    ],
)
def test_filename_is_built_from_parsed_values(staff_client, params, name):
    make_activity()
    resp = staff_client.get(URL, params)
    assert resp.status_code == 200
    disposition = resp["Content-Disposition"]
    b"".join(resp.streaming_content)
    filename = disposition.split('filename="', 1)[1][:-1]
    if name:
        assert filename == name
    else:
        assert filename.startswith("activities_20240101T100000Z_") and filename.endswith(".ndjson")
    assert all(c.isalnum() or c in "_-.T" for c in filename), filename


def test_list_and_stats_reject_the_same_values(staff_client):
    for url in ("/api/tracking/activities/", "/api/tracking/stats/"):
        assert staff_client.get(url, {"since": '2024W01"10'}).status_code == 400


@pytest.mark.parametrize("value", ['2024W01"10', "2024W01\n10", "2024-02-30"])
def test_cli_export_rejects_the_same_values(value, tmp_path):
    from .integrity_helpers import run_tracking

    with pytest.raises(Exception) as exc:  # argparse's error exits through CommandError
        run_tracking("export", "--since", value, "-o", str(tmp_path / "x.ndjson"))
    assert "is not a date" in str(exc.value)
