"""Run every benchmark, one after the other, and combine their results.

    .venv/bin/python -m bench                  # every benchmark, full size (`make bench`)
    .venv/bin/python -m bench --quick          # every benchmark, small (checks they work)
    .venv/bin/python -m bench --only accept,scaling
    .venv/bin/python -m bench --list

A benchmark is any `bench/<name>.py` runnable as `python -m bench.<name>`; each runs in its
own process (so one's processes, ports and memory cannot skew the next), gets `--quick`
passed through, and saves its JSON to `bench/results/<name>-<time>.json`. This runner
collects the files each one wrote, prints one table per benchmark and writes them all,
with the machine they ran on, to `bench/results/all-<time>.json`. It exits non-zero if a
benchmark failed, after running the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import QUICK_NOTICE, RESULTS, save, table

BENCH_DIR = Path(__file__).parent
# Slowest first would hide the quick ones' results behind a long wait: cheap ones first.
ORDER = (
    "ingress",
    "accept",
    "admission",
    "postcall",
    "session_density",
    "scaling",
    "failover",
    "rolling_restart",
)
TIMEOUT_S = {"quick": 600.0, "full": 3600.0}
# Programs of bench/ that are not benchmarks: launchers that benchmarks start.
LAUNCHERS = frozenset({"sdk_worker"})  # a session worker on the SDK's sideband


def discover() -> list[str]:
    """Modules of bench/ that run as a program (`if __name__ == "__main__":`), launchers
    aside."""
    found = [
        path.stem
        for path in sorted(BENCH_DIR.glob("*.py"))
        if not path.stem.startswith("_")
        and path.stem not in LAUNCHERS
        and '__name__ == "__main__"' in path.read_text()
    ]
    known = [name for name in ORDER if name in found]
    return known + [name for name in found if name not in known]


def new_results(name: str, since: float) -> list[Path]:
    """The JSON files benchmark `name` wrote since `since` (wall clock)."""
    if not RESULTS.exists():
        return []
    return sorted(
        path for path in RESULTS.glob(f"{name}-*.json") if path.stat().st_mtime >= since - 1
    )


def run_one(name: str, quick: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick else [])]
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started_wall, started = time.time(), time.monotonic()
    try:
        code = subprocess.run(
            argv, cwd=BENCH_DIR.parent, timeout=TIMEOUT_S["quick" if quick else "full"]
        ).returncode
    except subprocess.TimeoutExpired:
        code = None
    files, results = [], []
    for path in new_results(name, started_wall):
        try:
            result = json.loads(path.read_text())
        except ValueError:
            continue
        if result.get("quick", quick) != quick:
            continue  # someone else's run of the same benchmark, written meanwhile
        files.append(path)
        results.append(result)
    status = "ok" if code == 0 and results else ("timeout" if code is None else f"exit {code}")
    if code == 0 and not results:
        status = "no results"
    return {
        "name": name,
        "status": status,
        "seconds": round(time.monotonic() - started, 1),
        "files": [str(path.relative_to(BENCH_DIR.parent)) for path in files],
        "results": results,
    }


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a benchmark reported: its first list of dicts (`results`, `rows`, ...),
    else its flat numbers; nested values are left to the JSON."""
    for key, value in result.items():
        if key != "machine" and isinstance(value, list) and value:
            if all(isinstance(row, dict) for row in value):
                return [{k: v for k, v in row.items() if not isinstance(v, dict | list)}
                        for row in value]  # fmt: skip
    flat = {
        k: v
        for k, v in result.items()
        if k not in ("benchmark", "machine") and not isinstance(v, dict | list)
    }
    return [flat] if flat else []


def report(runs: list[dict[str, Any]]) -> None:
    print("\n=== summary")
    print(table([{k: v for k, v in run.items() if k in ("name", "status", "seconds")}
                 for run in runs]))  # fmt: skip
    for run in runs:
        for result in run["results"]:
            rows = rows_of(result)
            if rows:
                print(f"\n--- {run['name']}")
                print(table(rows))


def main() -> int:
    names = discover()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs: check they work")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {names}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {names}")
    skipped = {n.strip() for n in args.skip.split(",") if n.strip()}
    if args.quick:
        print(QUICK_NOTICE, flush=True)
    runs = [run_one(name, args.quick) for name in chosen if name not in skipped]
    report(runs)
    if args.quick:
        print(f"\n{QUICK_NOTICE}")
    path = save("all", {"quick": args.quick, "runs": runs})
    print(f"\nsaved {path}")
    return 0 if all(run["status"] == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
