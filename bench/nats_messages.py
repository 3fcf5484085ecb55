"""What one call asks of NATS: messages per call by subject family, counted by a `>`
subscriber while silent calls (hung up once answered) go through the real services.

    .venv/bin/python -m bench.nats_messages                       # this code, 40 calls
    .venv/bin/python -m bench.nats_messages --ref 3092875 --ref HEAD

Every message nats-server routes is counted once per subscriber that gets it: a
JetStream publish (its subject), its ack (`_INBOX` replies), a delivery to a consumer or a
KV watch, a republished event. The calls are placed slowly (5/s) so that batching does not
hide the per-call cost. Each `--ref` runs from a `git archive` of that commit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import tempfile
from collections import Counter
from pathlib import Path

import nats
from nats.aio.msg import Msg

from bench.accept import ROOT, run_rate, warm_up
from bench.admission import Fleet, checkout
from bench.machine import save, table

RATE = 5


def family(subject: str) -> str:
    """A subject's family: the bucket, stream subject, or JetStream API it belongs to."""
    parts = subject.split(".")
    if subject.startswith("$KV."):
        return ".".join(parts[:2])
    if subject.startswith("$JS.ACK"):
        return "$JS.ACK"
    if subject.startswith("$JS.API.CONSUMER.MSG.NEXT"):
        return "$JS.API.CONSUMER.MSG.NEXT"
    if subject.startswith("$JS.API"):
        return ".".join(parts[:4])
    if subject.startswith("$JS.EVENT"):
        return "$JS.EVENT.ADVISORY"
    if subject.startswith("_INBOX"):
        return "_INBOX (replies)"
    return ".".join(parts[:2])


async def count(code: Path, calls: int) -> Counter[str]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-messages-") as tmp:
        fleet = Fleet(Path(tmp) / "store", code)
        try:
            await fleet.start(acceptors=1, workers=1, capacity=3000)
            await warm_up(fleet.sim)
            nc = await nats.connect(fleet.server.url)
            seen: Counter[str] = Counter()

            async def on_message(msg: Msg) -> None:
                seen[family(msg.subject)] += 1

            await nc.subscribe(">", cb=on_message)
            await nc.flush()
            await run_rate(fleet.sim, RATE, calls / RATE, fleet.pids)
            await nc.flush()
            await nc.close()
            return seen
        finally:
            await fleet.stop()


async def main_async(args: argparse.Namespace) -> None:
    calls = 10 if args.quick else args.calls
    refs = args.ref or ["(this tree)"]
    columns: dict[str, Counter[str]] = {}
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-messages-") as tmp:
        for index, ref in enumerate(refs):
            code = ROOT if ref == "(this tree)" else checkout(ref, Path(tmp) / f"ref-{index}")
            columns[ref] = await count(code, calls)
    families = sorted(
        {f for seen in columns.values() for f in seen},
        key=lambda f: -max(columns[ref][f] for ref in refs),
    )
    rows: list[dict[str, object]] = [
        {"family": f, **{ref: round(columns[ref][f] / calls, 2) for ref in refs}} for f in families
    ]
    rows.append(
        {"family": "total", **{r: round(sum(columns[r].values()) / calls, 2) for r in refs}}
    )
    print(table(rows))
    print("saved", save("nats_messages", {"calls": calls, "per_call": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 calls (checks it works)")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--ref", action="append", help="git ref to count (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    gc.disable()  # this process plays OpenAI: no collector pauses in its timings
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
