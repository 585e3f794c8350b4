"""Generate docs/settings.md, the settings reference, from ``tracking/conf.py``.

    python -m tools.settings_doc           # write docs/settings.md (`make settings-doc`)
    python -m tools.settings_doc --check   # exit 1 when docs/settings.md is out of date

One row per entry of ``DEFAULTS``, in its order: the Django setting's name, the default and the
description from ``DESCRIPTIONS``. ``tests/test_settings_doc.py`` runs the check.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

from tracking.conf import DEFAULTS, DESCRIPTIONS, setting_name

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "settings.md"
COMMAND = "make settings-doc"

HEADER = f"""\
# Settings reference

<!-- Generated from tracking/conf.py by `{COMMAND}` (python -m tools.settings_doc): do not edit.
     Describe a new setting in DESCRIPTIONS beside DEFAULTS there, then regenerate. -->

Every setting of the app with its default. Set them in your Django settings module; all are
optional except `TRACKING_ENCRYPTION_KEYS` and `TRACKING_SEAL_KEYS`. Invalid values are
reported by `python manage.py check` (the app's system checks: errors `E0xx`, warnings
`W0xx`). Code reads them through `tracking.conf.tracking_settings.<NAME>` (the name without
the `TRACKING_` prefix), which follows `override_settings` in tests.

The topic pages explain how settings work together: [recording](recording.md),
[geolocation and devices](enrichment.md), [encryption](encryption.md),
[hand-offs and the spool](pipeline.md), [detection](detection.md),
[review API](api.md), [dashboard](dashboard.md), [integrity](integrity.md) and
[performance](performance.md).

| Setting | Default | What it does |
| --- | --- | --- |
"""


class MissingDescription(Exception):
    """A setting in DEFAULTS has no description, or a description names no setting."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    text = repr(value)
    if "|" in text:
        # Inside a code span a table splits on "|" (GitHub) or shows "\|" (Python-Markdown).
        return f"<code>{html.escape(text).replace('|', '&#124;')}</code>"
    return f"`{text}`"


def render() -> str:
    """The page for the current DEFAULTS and DESCRIPTIONS."""
    missing = [name for name in DEFAULTS if not DESCRIPTIONS.get(name, "").strip()]
    unknown = [name for name in DESCRIPTIONS if name not in DEFAULTS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"settings without a description: {', '.join(missing)}")
        if unknown:
            parts.append(f"descriptions of settings that do not exist: {', '.join(unknown)}")
        raise MissingDescription(
            "tracking/conf.py: " + "; ".join(parts) + ". Fix DESCRIPTIONS beside DEFAULTS, "
            f"then run `{COMMAND}`."
        )
    rows = [
        f"| `{setting_name(name)}` | {_default(value)} | {_cell(DESCRIPTIONS[name].strip())} |"
        for name, value in DEFAULTS.items()
    ]
    return HEADER + "\n".join(rows) + "\n"


def stale(path: Path = PAGE) -> bool:
    """Whether ``path`` differs from what ``render()`` writes."""
    try:
        return path.read_text(encoding="utf-8") != render()
    except FileNotFoundError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--output", type=Path, default=PAGE, help="the page (docs/settings.md)")
    args = parser.parse_args(argv)
    try:
        text = render()
    except MissingDescription as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check:
        if stale(args.output):
            print(
                f"{args.output} is out of date with tracking/conf.py: run `{COMMAND}`.",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(DEFAULTS)} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
