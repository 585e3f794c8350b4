"""The documentation names only what the code has.

Every page of the MkDocs site (docs/*.md), the README and SECURITY.md is read: each dotted
``tracking.…`` / ``detectors.…`` name in inline code and each ``from … import …`` in a code
block must import; names that are not Python objects must be defined by the code as they are
spelled (permissions, system check ids, Celery task and logger names). Every ``TRACKING_…``
setting mentioned must exist, and every ``tracking <subcommand>`` must be one. The site's nav
lists every page, and the site builds with warnings as errors.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.apps import apps

from tracking.conf import DEFAULTS, setting_name
from tracking.management.commands.tracking import SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md", ROOT / "SECURITY.md"]

CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
DOTTED = re.compile(r"(?<![\w./-])((?:tracking|detectors)(?:\.[A-Za-z_]\w*)+)")
IMPORT = re.compile(r"^\s*from\s+((?:tracking|detectors)[\w.]*)\s+import\s+([\w, ]+)$", re.M)
SETTING = re.compile(r"\bTRACKING_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
SUBCOMMAND = re.compile(r"(?:manage\.py tracking|^tracking|`tracking) ([a-z][a-z-]*)", re.M)
# Environment variables of the test suite and the example project, not Django settings.
ENVIRONMENT = re.compile(r"TRACKING_TEST_\w+")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _inline_code(text: str) -> list[str]:
    return CODE_SPAN.findall(FENCE.sub("", text))


@cache
def _source_literals() -> str:
    """The text of every Python module of the app and the engine."""
    files = sorted((ROOT / "tracking").rglob("*.py")) + sorted((ROOT / "detectors").rglob("*.py"))
    return "\n".join(_text(f) for f in files)


@cache
def _permissions() -> set[str]:
    names = set()
    for model in apps.get_app_config("tracking").get_models():
        opts = model._meta
        names.update(f"tracking.{action}_{opts.model_name}" for action in opts.default_permissions)
        names.update(f"tracking.{codename}" for codename, _ in opts.permissions)
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _defined(dotted: str) -> bool:
    if _resolves(dotted) or dotted in _permissions():
        return True
    # Check ids, Celery task names, logger names, PostgreSQL settings: spelled as a literal.
    return f'"{dotted}"' in _source_literals() or f"'{dotted}'" in _source_literals()


def _dotted_names(text: str) -> set[str]:
    names = set()
    for span in _inline_code(text):
        names.update(m.rstrip(".") for m in DOTTED.findall(span))
    for module, imported in IMPORT.findall(text):
        names.add(module)
        names.update(f"{module}.{name.strip()}" for name in imported.split(",") if name.strip())
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_dotted_name_exists(page):
    missing = sorted(name for name in _dotted_names(_text(page)) if not _defined(name))
    assert not missing, (
        f"{page.relative_to(ROOT)} names what the code does not define "
        f"(moved or renamed? fix the page): {missing}"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_setting_mentioned_exists(page):
    known = {setting_name(name) for name in DEFAULTS}
    mentioned = set(SETTING.findall(ENVIRONMENT.sub("", _text(page))))
    unknown = sorted(mentioned - known)
    assert not unknown, (
        f"{page.relative_to(ROOT)} mentions settings that tracking/conf.py does not define: "
        f"{unknown}"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_subcommand_mentioned_exists(page):
    mentioned = set(SUBCOMMAND.findall(_text(page)))
    unknown = sorted(mentioned - set(SUBCOMMANDS))
    assert not unknown, f"{page.relative_to(ROOT)}: no `manage.py tracking` subcommand {unknown}"


def test_command_line_page_covers_every_subcommand():
    text = _text(DOCS / "cli.md")
    undocumented = [name for name in SUBCOMMANDS if f"`tracking {name}" not in text]
    assert not undocumented, f"docs/cli.md does not list: {undocumented}"


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_nav_lists_every_page_once():
    config = yaml.safe_load(_text(ROOT / "mkdocs.yml"))
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), f"pages listed twice in mkdocs.yml: {nav}"
    generated = {"security.md", "changelog.md", "benchmarks.md"}  # tools/mkdocs_hooks.py
    on_disk = {p.name for p in DOCS.glob("*.md")}
    assert on_disk - set(nav) == set(), "add these pages to mkdocs.yml's nav"
    assert set(nav) - on_disk == generated


def test_the_links_that_leave_docs_are_rewritten_for_the_site(tmp_path):
    hooks = importlib.import_module("tools.mkdocs_hooks")
    assert hooks._site_target("integrity.md", "../SECURITY.md") == "security.md"
    assert hooks._site_target("index.md", "../benchmarks/README.md") == "benchmarks.md"
    assert hooks._site_target("benchmarks.md", "../docs/performance.md") == "performance.md"
    assert hooks._site_target("security.md", "docs/ARCHITECTURE.md") == "ARCHITECTURE.md"
    assert hooks._site_target("api.md", "dashboard.md") is None
    assert hooks._site_target("api.md", "https://example.org/SECURITY.md") is None
    for repo_path in hooks.ROOT_PAGES:
        assert (ROOT / repo_path).is_file(), repo_path


def test_images_are_small_and_used():
    images = sorted((DOCS / "images").glob("*.png"))
    assert images
    text = "\n".join(_text(page) for page in PAGES)
    for image in images:
        assert image.stat().st_size < 300_000, f"{image.name}: keep screenshots under 300 KB"
        assert f"images/{image.name}" in text, f"{image.name} is not used by any page"


def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is missing: `make install` installs the dev extra"
    run = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    page = _text(tmp_path / "site" / "integrity" / "index.html")
    assert 'href="../security/"' in page
    assert (tmp_path / "site" / "images" / "dashboard-queue.png").is_file()
