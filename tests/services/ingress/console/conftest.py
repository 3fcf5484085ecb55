"""One stack and one headless Chromium per test module, reused by its tests.

The browser is Debian's `chromium` (installed by `.ci/run`), driven by Playwright; it
never downloads a browser of its own and never leaves loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from playwright.async_api import Browser, async_playwright

from examples.salon_tools import salon_service
from simulator import Faults
from switchboard.nats_server import NatsServer
from tests.stack import Stack

VIEW_TOKEN = "view-" + "v" * 32
CONTROL_TOKEN = "ctl-" + "c" * 32
AGENTS_FILE = Path(__file__).resolve().parents[4] / "examples" / "agents.yaml"
SALON = "+61468002102"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console_stack(module_nats: NatsServer) -> AsyncIterator[Stack]:
    """The real stack with the console on (both tokens), the example agents and the salon's
    tool service, as `make run` has them."""
    tools = salon_service(broker=NatsBroker(module_nats.url))
    await tools.start()
    running = await Stack(
        module_nats.url,
        workers=2,
        faults=Faults(refer_outcome="transfer"),
        settings_overrides={
            "switchboard_view_token": VIEW_TOKEN,
            "switchboard_control_token": CONTROL_TOKEN,
            "switchboard_agents_file": AGENTS_FILE,
        },
    ).start()
    yield running
    await running.stop()
    await tools.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Fails, not skips, without Debian's chromium: `.ci/run` installs it."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


def console_url(stack: Stack) -> str:
    assert stack.ingress is not None
    return f"http://127.0.0.1:{stack.ingress.http.port}/console"
