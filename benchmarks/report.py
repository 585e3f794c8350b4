"""Collects figures as they are measured and prints them, each next to its baseline."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

UTC = dt_timezone.utc


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None  # same unit, measured in the same run
    baseline_name: str = ""
    target: str = ""  # the target, as text
    ok: bool | None = None  # target met?
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.started = datetime.now(UTC)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print("  " + self._line(figure), flush=True)
        return figure

    @staticmethod
    def _line(f: Figure) -> str:
        text = f"{f.section:<10} {f.name:<52} {f.value:>12,.2f} {f.unit:<8}"
        if f.ratio is not None:
            text += f" ratio {f.ratio:6.3f} vs {f.baseline_name} ({f.baseline:,.2f})"
        if f.target:
            mark = "" if f.ok is None else (" MET" if f.ok else " MISSED")
            text += f"  [target {f.target}{mark}]"
        if f.note:
            text += f"  {f.note}"
        return text

    def summary(self) -> str:
        lines = [f"== summary ({self.started:%Y-%m-%d %H:%M} UTC)"]
        lines += [self._line(f) for f in self.figures]
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "date": self.started.isoformat(),
            "machine": machine(),
            "figures": [asdict(f) | {"ratio": f.ratio} for f in self.figures],
        }
        path.write_text(json.dumps(doc, indent=2))
