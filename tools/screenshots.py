"""Take the dashboard screenshots of the README and the docs from a running demo.

    make demo                                   # in another terminal (or DEMO_PORT=...)
    DEMO_PASSWORD=... .venv/bin/python -m tools.screenshots [--base-url http://127.0.0.1:8000]

Logs in through the admin as ``admin`` with headless Chromium (Debian's ``/usr/bin/chromium``,
driven by Playwright as ``tests/test_browser.py`` does) and writes, at 1440×900:
``dashboard-queue.png`` (the flagged queue and the live feed), ``dashboard-charts.png`` and
``dashboard-detail.png`` (the detail page of the newest flagged activity with an
impossible-travel finding, else the newest flagged one) into ``docs/images/``. Fails when a
file exceeds ``MAX_BYTES``: look at each one before committing it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_BYTES = 300_000
DASHBOARD = "/api/tracking/dashboard/"


def take(base_url: str, username: str, password: str, out: Path, chromium: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [
        out / "dashboard-queue.png",
        out / "dashboard-charts.png",
        out / "dashboard-detail.png",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{base_url}/admin/login/?next={DASHBOARD}")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"**{DASHBOARD}")
        page.wait_for_selector("#charts svg")  # the charts and the live feed have loaded
        page.wait_for_timeout(1500)
        page.screenshot(path=files[0])
        page.locator("#charts").screenshot(path=files[1])

        rows = page.locator("tr.queue-row")
        if rows.count() == 0:
            raise SystemExit("the flagged queue is empty: run `make demo` first")
        travel = rows.filter(has_text="impossible_travel")
        row = travel.first if travel.count() else rows.first
        page.goto(base_url + row.get_attribute("data-detail-url"))
        page.wait_for_timeout(1000)
        page.screenshot(path=files[2])
        browser.close()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", ""))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("the admin's password: --password or DEMO_PASSWORD")
    too_big = []
    for path in take(
        args.base_url.rstrip("/"), args.username, args.password, args.out, args.chromium
    ):
        size = path.stat().st_size
        print(f"{path} {size // 1024} KiB")
        if size > MAX_BYTES:
            too_big.append(path.name)
    if too_big:
        print(f"larger than {MAX_BYTES} bytes: {too_big}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
