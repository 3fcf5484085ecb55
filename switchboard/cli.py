"""The `switchboard` command: one entry point, the service is the sub-command.

Each sub-command only parses its options and hands them to the service's `main`; the
services themselves live in `services/`, the simulator in `simulator/`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Backend for AI phone calls on OpenAI Realtime SIP."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingress = commands.add_parser("ingress", help="webhook receiver and operator control API")
    ingress.add_argument("--host", default=os.environ.get("INGRESS_HOST", "0.0.0.0"))
    ingress.add_argument("--port", type=int, default=_env_int("INGRESS_PORT", 8080))

    acceptor = commands.add_parser("acceptor", help="accepts or rejects incoming calls")
    acceptor.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("METRICS_PORT", 9101),
        help="health, readiness and metrics port (env METRICS_PORT)",
    )

    session = commands.add_parser("session", help="a session worker holding live calls")
    session.add_argument(
        "--capacity",
        type=int,
        default=_env_int("SESSION_CAPACITY", 50),
        help="concurrent calls this worker holds (env SESSION_CAPACITY)",
    )
    session.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("METRICS_PORT", 9102),
        help="health, readiness and metrics port (env METRICS_PORT)",
    )
    session.add_argument(
        "--worker-id",
        default=os.environ.get("WORKER_ID", ""),
        help="stable name of this worker (default: host name and pid)",
    )

    simulator = commands.add_parser(
        "simulator", help="OpenAI stand-in: REST call control, sideband, webhook sender"
    )
    simulator.add_argument("--host", default=os.environ.get("SIMULATOR_HOST", "127.0.0.1"))
    simulator.add_argument("--port", type=int, default=_env_int("SIMULATOR_PORT", 8090))
    simulator.add_argument(
        "--webhook-url",
        default=os.environ.get(
            "SIMULATOR_WEBHOOK_URL", "http://127.0.0.1:8080/api/voice/realtime-webhook"
        ),
        help="where the simulated OpenAI sends realtime.call.incoming",
    )
    simulator.add_argument("--calls", type=int, default=0, help="demo calls to place (0: none)")
    simulator.add_argument("--rate", type=float, default=1.0, help="calls per second")
    simulator.add_argument("--script", default=None, help="caller script (YAML or JSON)")
    simulator.add_argument("--to", default="+18005551212", help="number dialled")
    simulator.add_argument(
        "--live-to",
        default=None,
        help="also place GPT-Live calls (every other one) to this number",
    )

    dev = commands.add_parser(
        "dev", help="embedded NATS, all services and the simulator, with live transcripts"
    )
    dev.add_argument("--calls", type=int, default=3, help="demo calls to place")
    dev.add_argument("--workers", type=int, default=2, help="session workers to start")
    dev.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything once every demo call has ended (exit 1 if one failed)",
    )
    dev.add_argument("--store-dir", default=".switchboard", help="JetStream store folder")
    dev.add_argument("--script", default=None, help="caller script for the demo calls")
    commands.add_parser("asyncapi", help="print the AsyncAPI 3 document of every NATS subject")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ingress":
        from services.ingress.main import main as run
    elif args.command == "acceptor":
        from services.acceptor.main import main as run
    elif args.command == "session":
        from services.session.main import main as run
    elif args.command == "simulator":
        from simulator.main import main as run
    elif args.command == "asyncapi":
        from switchboard.asyncapi import main as run
    else:
        from switchboard.dev import main as run
    return run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
