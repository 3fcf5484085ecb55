"""The long-running services a complete deployment runs: `switchboard services` prints them.

One list, so that nothing that starts a whole stack can forget one: `switchboard dev`
starts each of them, and tests check `compose.yaml` and the Kubernetes manifests against
it. Each name is a `switchboard` sub-command that starts the service with its defaults. A
service added later is added here, and those tests say where else it is missing.
"""

from __future__ import annotations

SERVICES: tuple[str, ...] = ("ingress", "acceptor", "session", "dialler", "postcall")
