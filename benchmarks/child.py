"""Run one in-process section in a fresh interpreter (each needs its own Django settings and
database) and collect its figures, which the child prints as ``@@FIGURE {json}`` lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

from . import dbs
from .report import Figure, Report

MARK = "@@FIGURE "


def emit(figure: Figure) -> None:
    """In the child: print the figure for the parent (and for a human reading along)."""
    print(MARK + json.dumps(asdict(figure)), flush=True)


def run(report: Report, module: str, args: list[str], *, settings: str, db_url: str) -> None:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(dbs.ROOT), DJANGO_SETTINGS_MODULE=settings, BENCH_DATABASE_URL=db_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=dbs.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(MARK):
            report.add(Figure(**json.loads(line[len(MARK) :])))
        else:
            print("    " + line.rstrip(), flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"{module} exited with {proc.returncode}")
