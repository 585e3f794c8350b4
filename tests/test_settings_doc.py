"""docs/settings.md is generated from tracking/conf.py and never drifts from it."""

from __future__ import annotations

import html
import re

import pytest

from tools import settings_doc
from tracking import conf

FIX = "run `make settings-doc`"
# A default holding "|" is an HTML code element (a table cell splits on "|" in a code span).
ROW = re.compile(
    r"^\| `(?P<setting>[A-Z_]+)` \| (?:`(?P<default>.*)`|<code>(?P<html>.*)</code>) \| "
    r"(?P<text>.+) \|$",
    re.M,
)


def test_every_setting_has_a_description():
    missing = [name for name in conf.DEFAULTS if not conf.DESCRIPTIONS.get(name, "").strip()]
    unknown = [name for name in conf.DESCRIPTIONS if name not in conf.DEFAULTS]
    assert not missing and not unknown, (
        f"tracking/conf.py: settings without a description in DESCRIPTIONS: {missing}; "
        f"descriptions of no setting: {unknown}. Describe each setting beside DEFAULTS, then {FIX}."
    )


def test_page_is_current():
    assert not settings_doc.stale(), (
        f"docs/settings.md is out of date with tracking/conf.py's DEFAULTS/DESCRIPTIONS: {FIX}."
    )


def test_one_row_per_setting_with_its_django_name_default_and_description():
    rows = {m["setting"]: m for m in ROW.finditer(settings_doc.render())}
    assert list(rows) == [conf.setting_name(name) for name in conf.DEFAULTS]
    assert rows["TRACKING_FLAG_THRESHOLD"]["default"] == "0.7"
    assert rows["TRACKING_THROTTLE_RATES"]["default"] == repr(conf.DEFAULTS["THROTTLE_RATES"])
    # Settings with a seed alias are listed under their TRACKING_ name, the alias named.
    assert rows["TRACKING_SENSITIVE_FIELDS"]["default"] == "['password', 'token', 'secret']"
    assert "`SENSITIVE_FIELDS`" in rows["TRACKING_SENSITIVE_FIELDS"]["text"]
    assert "SENSITIVE_FIELDS" not in rows
    assert rows["TRACKING_SEAL_KEYS"]["text"] == conf.DESCRIPTIONS["SEAL_KEYS"]
    paths = html.unescape(rows["TRACKING_PATHS"]["html"]).replace("&#124;", "|")
    assert paths == repr(conf.DEFAULTS["PATHS"])


def test_a_changed_default_makes_the_page_stale(monkeypatch, tmp_path):
    page = tmp_path / "settings.md"
    assert settings_doc.main(["--output", str(page)]) == 0
    assert settings_doc.main(["--check", "--output", str(page)]) == 0

    monkeypatch.setitem(conf.DEFAULTS, "BATCH_SIZE", 250)
    assert settings_doc.stale(page)
    assert "| `TRACKING_BATCH_SIZE` | `250` |" in settings_doc.render()


def test_check_names_the_command_to_run(monkeypatch, tmp_path, capsys):
    page = tmp_path / "settings.md"
    page.write_text("# Settings reference\n", encoding="utf-8")
    assert settings_doc.main(["--check", "--output", str(page)]) == 1
    assert FIX in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == "# Settings reference\n"


def test_a_setting_without_description_fails_with_the_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(conf.DEFAULTS, "NEW_KNOB", 3)
    with pytest.raises(settings_doc.MissingDescription, match="NEW_KNOB.*make settings-doc"):
        settings_doc.render()
    assert settings_doc.main(["--output", str(tmp_path / "settings.md")]) == 1
    assert "NEW_KNOB" in capsys.readouterr().err
    assert not (tmp_path / "settings.md").exists()


def test_table_cells_cannot_break_the_table(monkeypatch):
    monkeypatch.setitem(conf.DEFAULTS, "PIPE_KNOB", "a|b")
    monkeypatch.setitem(conf.DESCRIPTIONS, "PIPE_KNOB", "one | two\nlines")
    row = next(line for line in settings_doc.render().splitlines() if "PIPE_KNOB" in line)
    assert row == "| `TRACKING_PIPE_KNOB` | <code>&#x27;a&#124;b&#x27;</code> | one \\| two lines |"
