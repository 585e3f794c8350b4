"""The durable spool: append+fsync, replay idempotently, corrupt lines skipped and reported."""

from __future__ import annotations

import pytest

from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import spool
from tracking.pipeline.ingest import ingest


def test_append_and_stats(spool_dir):
    assert spool.stats()["events"] == 0
    spool.append([Event(type="API"), Event(type="AUTH")])
    st = spool.stats()
    assert st["files"] == 1 and st["events"] == 2 and st["bytes"] > 0 and st["oldest"]
    lines = next(spool_dir.glob("seg-*.ndjson")).read_text().splitlines()
    assert [spool.decode_line(line.encode())["type"] for line in lines] == ["API", "AUTH"]
    # Encrypted: base64url has no quote, so no JSON key or string survives in the clear (a
    # short word such as "API" can occur in random base64 by chance).
    assert all(line.startswith("v1:") and '"' not in line for line in lines)


@pytest.mark.django_db
def test_replay_stores_and_deletes_idempotently(spool_dir):
    events = [Event(type="API", endpoint=f"/{i}") for i in range(5)]
    spool.append(events)
    spool.append(events[:2])  # delivered twice: stored once
    res = spool.replay(ingest)
    assert res.stored == 5 and res.duplicates == 2
    assert Activity.objects.count() == 5
    assert spool.stats()["events"] == 0
    assert not list(spool_dir.glob("seg-*"))


@pytest.mark.django_db
def test_corrupt_line_skipped_and_reported(spool_dir):
    spool.append([Event(type="API", endpoint="/a")])
    seg = next(spool_dir.glob("seg-*.ndjson"))
    with open(seg, "ab") as fh:
        fh.write(b'{"type": "API", "endpo\n')  # torn write
        fh.write(b"\xff\xfe not json\n")
    spool.append([Event(type="API", endpoint="/b")])
    res = spool.replay(ingest)
    assert res.stored == 2 and res.corrupt == 2
    assert len(res.errors) == 2 and ":2:" in res.errors[0]
    assert set(Activity.objects.values_list("endpoint", flat=True)) == {"/a", "/b"}
    assert spool.stats()["rejected"] == 2


@pytest.mark.django_db
def test_database_down_keeps_segment(spool_dir, database_down):
    spool.append([Event(type="API")])
    res = spool.replay(ingest)
    assert res.stored == 0 and "database unavailable" in res.errors[0]
    assert "Connection refused" in res.errors[0]
    assert spool.stats()["events"] == 1
    database_down.stop()
    assert spool.replay(ingest).stored == 1


def test_claim_prevents_appends_into_claimed_segment(spool_dir):
    spool.append([Event(type="API")])
    seg = next(spool_dir.glob("seg-*.ndjson"))
    claimed = spool._claim(seg)
    spool.append([Event(type="AUTH")])  # must go to a fresh segment
    assert len(claimed.read_text().splitlines()) == 1
    assert len(list(spool_dir.glob("seg-*.ndjson"))) == 1


def test_stats_count_a_segment_renamed_while_scanning(settings, tmp_path, monkeypatch):
    """A replayer claiming or releasing a segment renames it; stats must not see it vanish."""
    from pathlib import Path

    from tracking.events import Event
    from tracking.pipeline import spool as spool_mod

    settings.TRACKING_SPOOL_DIR = str(tmp_path / "spool")
    spool_mod.append([Event(type="API", endpoint="/x")])
    real_open = open
    calls = {"n": 0}

    def racing_open(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1 and Path(path).name.startswith(spool_mod.SEGMENT_PREFIX):
            raise FileNotFoundError(path)  # renamed by a replayer between listing and reading
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", racing_open)
    assert spool_mod.stats()["events"] == 1


def test_pending_survives_a_segment_renamed_while_listing(settings, tmp_path, monkeypatch):
    from pathlib import Path

    from tracking.events import Event
    from tracking.pipeline import spool as spool_mod

    settings.TRACKING_SPOOL_DIR = str(tmp_path / "spool")
    spool_mod.append([Event(type="API", endpoint="/x")])
    real_stat = Path.stat
    calls = {"n": 0}

    def racing_stat(self, *args, **kwargs):
        if self.name.startswith(spool_mod.SEGMENT_PREFIX):
            calls["n"] += 1
            if calls["n"] == 1:
                raise FileNotFoundError(str(self))  # claimed by a replayer meanwhile
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", racing_stat)
    assert spool_mod.pending() is True
