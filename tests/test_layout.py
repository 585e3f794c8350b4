"""The layering of tracking/ (pyproject.toml, [tool.importlinter]) holds, and the contracts
catch what they are for: an upward import, an import between independent siblings, and a
cycle inside a folder."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(LINT.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the packages and the contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("layout")
    for name in ("tracking", "detectors"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # ingest knows neither the spool nor the writer
        ("tracking/pipeline/ingest.py", "from tracking.pipeline import spool", "pipeline"),
        # storage sits under the entry points
        ("tracking/storage/stats.py", "from tracking.api import views", "layers"),
        # the batch step reaches blocking only through its after_detection hook
        ("tracking/pipeline/ingest.py", "from tracking.respond import actions", "layers"),
        # capture sits under blocking (the refusal mark lives in capture)
        ("tracking/capture/tracker.py", "from tracking.respond import enforce", "layers"),
        # pipeline and export are independent siblings
        ("tracking/export/values.py", "from tracking.pipeline import rows", "layers"),
        # a cycle between two modules of one folder (capture: decorators -> tracker)
        ("tracking/capture/tracker.py", "from tracking.capture import decorators", "cycle"),
    ],
)
def test_a_violation_breaks_a_contract(checkout, module, line, broken):
    path = checkout / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # noqa\n")
        result = _lint(checkout)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout or "2 broken" in result.stdout


def test_no_function_level_import_outside_optional_dependencies():
    """Imports inside functions only for optional dependencies, a heavy one only some calls
    need, or Django's app loading."""
    optional = (
        "celery",
        "psycopg",
        "drf_spectacular",
        "sklearn",
        "numpy",
        "mmdb_writer",
        "netaddr",
        "ua_parser.regex",
        "requests",  # ~4 MiB per process; only the remote lookups (breach range API, geo) use it
        "django.contrib",
        "django.db.backends.postgresql",
        "tracking.pipeline.tasks",  # the Celery task modules
        "tracking.delivery.tasks",
    )
    allowed_files = {"tracking/__init__.py", "tracking/apps.py"}
    found = []
    for path in sorted((ROOT / "tracking").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in allowed_files or rel.startswith(("tracking/detection/", "tracking/migrations/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                else:
                    continue
                for name in names:
                    if not name.startswith(optional):
                        found.append(f"{rel}:{inner.lineno} {name}")
    assert found == []


def _sources() -> list[Path]:
    return [
        p
        for folder in ("tracking", "detectors", "tests")
        for p in (ROOT / folder).rglob("*.py")
        if "migrations" not in p.parts and p != Path(__file__).resolve()
    ]


def test_no_marker_for_a_lint_rule_that_is_not_enabled():
    # ruff's BLE rules are not selected (pyproject.toml): a marker would suppress nothing.
    marked = [str(p.relative_to(ROOT)) for p in _sources() if "BLE001" in p.read_text()]
    assert not marked, marked


def test_one_severity_scale():
    """The scale is ``detectors.base.SEVERITIES``; nothing spells it out again."""
    spelled = [
        str(p.relative_to(ROOT))
        for p in _sources()
        if p != ROOT / "detectors" / "base.py"
        and '"low", "medium", "high", "critical"' in p.read_text()
    ]
    assert not spelled, spelled


# "Modules under ~500 lines with one concern": a module that grows past this is split by
# concern (as tracking/simulator/ and the system checks were), not allowed to drift.
MAX_MODULE_LINES = 600


def test_no_module_outgrows_one_concern():
    too_long = {}
    for name in ("tracking", "detectors"):
        for path in (ROOT / name).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"split these by concern (over {MAX_MODULE_LINES} lines): {too_long}"
