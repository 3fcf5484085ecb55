"""The `switchboard` command: one entry point, the service is the sub-command.

Each sub-command only parses its options and hands them to the service's `main`; the
services themselves live in `services/`, the simulator in `simulator/`. Every option's
default comes from the settings (`Settings`, `SimulatorSettings`), so a flag, the
environment and `.env` always agree. A configuration error is one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from shared.settings import DEFAULT_METRICS_PORTS, ConfigError, Settings, load_settings
from simulator.settings import SimulatorSettings
from switchboard.services import SERVICES

CONFIG_ERROR_EXIT = 2


def version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


def port_number(text: str) -> int:
    """A port number, checked as the settings check `*_PORT`."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (from the settings) after its description; an option
    without one says what happens instead in its description."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, ""):
            return action.help
        return super()._get_help_string(action)


def _add_health_options(command: argparse.ArgumentParser, settings: Settings, name: str) -> None:
    command.add_argument(
        "--host",
        default=settings.metrics_host,
        help="address of the health, readiness and metrics server (env METRICS_HOST)",
    )
    port = settings.metrics_port
    command.add_argument(
        "--metrics-port",
        type=port_number,
        default=DEFAULT_METRICS_PORTS[name] if port is None else port,
        help="port of /healthz, /readyz and /metrics (env METRICS_PORT)",
    )


def build_parser(
    settings: Settings | None = None, simulator_settings: SimulatorSettings | None = None
) -> argparse.ArgumentParser:
    """The whole command line; defaults from `settings` (read from the environment when
    not given)."""
    settings = settings or load_settings()
    sim = simulator_settings or load_settings(SimulatorSettings)
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Backend for AI phone calls on OpenAI Realtime SIP.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"switchboard {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, formatter_class=_Help)

    ingress = command("ingress", "webhook receiver and operator control API")
    ingress.add_argument(
        "--host", default=settings.ingress_host, help="listen address (env INGRESS_HOST)"
    )
    ingress.add_argument(
        "--port",
        type=port_number,
        default=settings.ingress_port,
        help="listen port (env INGRESS_PORT)",
    )

    acceptor = command("acceptor", "accepts or rejects incoming calls")
    _add_health_options(acceptor, settings, "acceptor")

    session = command("session", "a session worker holding live calls")
    session.add_argument(
        "--capacity",
        type=positive_int,
        default=settings.session_capacity,
        help="concurrent calls this worker holds (env SESSION_CAPACITY)",
    )
    _add_health_options(session, settings, "session")
    session.add_argument(
        "--worker-id",
        default=settings.worker_id,
        help="stable name of this worker (env WORKER_ID; empty: host name and pid)",
    )

    postcall = command("postcall", "post-call webhooks to subscribers, and the call history index")
    _add_health_options(postcall, settings, "postcall")

    from switchboard.calls import add_calls_parser

    add_calls_parser(commands, settings, _Help)

    simulator = command("simulator", "OpenAI stand-in: REST call control, sideband, webhooks")
    simulator.add_argument("--host", default=sim.host, help="listen address (env SIMULATOR_HOST)")
    simulator.add_argument(
        "--port",
        type=port_number,
        default=sim.port,
        help="port of REST and sideband (env SIMULATOR_PORT)",
    )
    simulator.add_argument(
        "--webhook-url",
        default=sim.webhook_url,
        help="where the simulated OpenAI sends realtime.call.incoming (env SIMULATOR_WEBHOOK_URL)",
    )
    simulator.add_argument("--calls", type=int, default=0, help="demo calls to place (0: none)")
    simulator.add_argument("--rate", type=float, default=1.0, help="calls per second")
    simulator.add_argument(
        "--script", default=None, help="caller script (YAML or JSON; default: the demo)"
    )
    simulator.add_argument(
        "--to", default=None, help="number dialled (default: the script's `to:`, or +18005551212)"
    )
    simulator.add_argument(
        "--live-to",
        default=None,
        help="also place GPT-Live calls (every other one) to this number",
    )

    dialler = command("dialler", "places outbound calls from the queue")
    _add_health_options(dialler, settings, "dialler")

    call = command("call", "ask for an outbound call (POST /calls on the ingress)")
    call.add_argument("to", help="the number to call, E.164 (+61…)")
    call.add_argument("--agent", required=True, help="the agent that places the call")
    call.add_argument("--context", default=None, help="JSON object given to the agent and tools")
    call.add_argument("--key", default=None, help="Idempotency-Key (default: a new one)")
    call.add_argument(
        "--url",
        default=f"http://127.0.0.1:{settings.ingress_port}",
        help="the ingress (env SWITCHBOARD_URL); token from SWITCHBOARD_CONTROL_TOKEN",
    )

    dev = command("dev", "embedded NATS, all services and the simulator, with live transcripts")
    dev.add_argument("--calls", type=int, default=3, help="demo calls to place")
    dev.add_argument("--workers", type=int, default=2, help="session workers to start")
    dev.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything once this run's demo calls have ended (exit 1 if one failed)",
    )
    dev.add_argument(
        "--store-dir",
        default=None,
        help="keep the JetStream store and logs in this folder across runs "
        "(default: a fresh store per run, logs in .switchboard/logs)",
    )
    dev.add_argument("--script", default=None, help="caller script for the demo calls")
    dev.add_argument(
        "--to",
        default=None,
        help="number the demo calls dial (default: the script's `to:`, else the first "
        "number of SWITCHBOARD_AGENTS_FILE, else the example salon's)",
    )
    command("asyncapi", "print the AsyncAPI 3 document of every NATS subject")
    command("services", "print the long-running services of a deployment, one a line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "services":
            print("\n".join(SERVICES))
            return 0
        if args.command == "ingress":
            from services.ingress.main import main as run
        elif args.command == "acceptor":
            from services.acceptor.main import main as run
        elif args.command == "session":
            from services.session.main import main as run
        elif args.command == "dialler":
            from services.dialler.main import main as run
        elif args.command == "call":
            from switchboard.call import main as run
        elif args.command == "postcall":
            from services.postcall.main import main as run
        elif args.command == "calls":
            from switchboard.calls import main as run
        elif args.command == "simulator":
            from simulator.main import main as run
        elif args.command == "asyncapi":
            from switchboard.asyncapi import main as run
        else:
            from switchboard.dev import main as run
        return run(args) or 0
    except ConfigError as error:
        where = f"switchboard {argv_command(argv)}".rstrip()
        print(f"{where}: configuration error: {error}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT


def argv_command(argv: Sequence[str] | None) -> str:
    """The sub-command named on the command line, if any (for an error before parsing)."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), "")


if __name__ == "__main__":
    sys.exit(main())
