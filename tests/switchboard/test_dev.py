"""`switchboard dev`: the whole stack as separate processes, demo calls, isolated runs,
no process left behind however it is stopped, and a failing service's reason shown."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.switchboard.dev_run import DevRun, command_line, wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CALL_ID = re.compile(r"^\d\d:\d\d:\d\d  (\S+)  ", re.MULTILINE)

# A call's report in the console's event column; the example webhook receiver's lines say
# "webhook      verified report …" for the same calls.
CONSOLE_REPORT = "  report  "


def call_ids(output: str) -> set[str]:
    return set(CALL_ID.findall(output))


def test_dev_runs_two_demo_calls_with_a_real_booking_and_exits_cleanly(tmp_path: Path) -> None:
    run = DevRun(tmp_path, "--calls", "2", "--exit-when-done", "--store-dir", "store")
    assert run.finish() == 0, run.stdout + run.stderr()
    out = run.stdout
    assert "2 of 2 calls completed" in out
    assert "/console  viewer token: view-" in out
    # The salon's Realtime call and the reminders' GPT-Live call, side by side.
    assert "agent salon" in out and "agent reminders (GPT-Live)" in out
    assert out.count(" ended ") == 2 and "caller_hangup" in out
    # The caller's "Done, Alex" follows a booking the tool service really made.
    assert out.count("called       book_appointment(") == 2
    assert out.count('"confirmed":true') == 2
    # The store was kept where asked, the logs too, each run after a separator.
    assert (tmp_path / "store" / "nats").is_dir()
    assert "===== switchboard dev run" in (tmp_path / "store" / "logs" / "ingress.log").read_text()
    assert "\x1b[" not in (tmp_path / "store" / "logs" / "tools.log").read_text()


def _children(run: DevRun) -> list[int]:
    """Every process the stack started, `nats-server` among them."""
    children = run.descendants()
    commands = [command_line(pid) for pid in children]
    assert any("nats-server" in c for c in commands), commands
    assert len(children) >= 5, commands  # nats, tools, ingress, acceptor, worker, simulator
    return children


def _assert_all_gone(children: list[int]) -> None:
    left = wait_gone(children, timeout=60)
    assert left == [], "left behind: " + ", ".join(command_line(pid) for pid in left)


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)  # SIGKILL: in the next test
def test_every_child_dies_with_the_dev_stack(tmp_path: Path, sig: signal.Signals) -> None:
    run = DevRun(tmp_path, "--calls", "0", "--workers", "1")
    try:
        run.wait_for_line("Ctrl-C to stop.")
        children = _children(run)
        run.process.send_signal(sig)
        _assert_all_gone(children)
        assert run.finish(timeout=30) == 0
    finally:
        run.kill()


@pytest.mark.parametrize("kept_store", [False, True], ids=["own-store", "store-dir"])
def test_a_killed_run_leaks_nothing_into_the_next(tmp_path: Path, kept_store: bool) -> None:
    store = ["--store-dir", "kept"] if kept_store else []
    first = DevRun(tmp_path, "--calls", "1", "--workers", "1", *store)
    try:
        first.wait_for_line(" caller ")  # mid-call
        children = _children(first)
        first.kill()  # SIGKILL: every child, nats-server included, still dies
        _assert_all_gone(children)
    finally:
        first.kill()
    earlier = call_ids(first.stdout)
    assert earlier

    second = DevRun(tmp_path, "--calls", "1", "--workers", "1", "--exit-when-done", *store)
    assert second.finish() == 0, second.stdout + second.stderr()
    assert "1 of 1 calls completed" in second.stdout
    assert second.stdout.count(CONSOLE_REPORT) == 1
    assert not call_ids(second.stdout) & earlier, second.stdout
    if not kept_store:  # the killed run's store was removed by the next run
        assert list((tmp_path / ".switchboard" / "runs").iterdir()) == []


def test_two_runs_side_by_side_each_with_its_own_agent(tmp_path: Path) -> None:
    agents = tmp_path / "bakery.yaml"
    agents.write_text(
        "agents:\n"
        "  - name: bakery\n"
        '    numbers: ["+15550001111"]\n'
        "    tools:\n"
        "      - {name: check_availability, parameters: {type: object}}\n"
        "      - {name: book_appointment, parameters: {type: object}}\n"
    )
    support = DevRun(tmp_path, "--calls", "2", "--exit-when-done", "--to", "+18005550199")
    bakery = DevRun(
        tmp_path, "--calls", "2", "--exit-when-done", env={"SWITCHBOARD_AGENTS_FILE": str(agents)}
    )
    assert support.finish() == 0, support.stdout + support.stderr()
    assert bakery.finish() == 0, bakery.stdout + bakery.stderr()
    for run in (support, bakery):
        assert "2 of 2 calls completed" in run.stdout
        assert run.stdout.count(CONSOLE_REPORT) == 2
    assert not call_ids(support.stdout) & call_ids(bakery.stdout)
    assert support.stdout.count("accepted     agent support") == 2
    assert "to +18005550199" in support.stdout
    assert bakery.stdout.count("accepted     agent bakery") == 2
    assert "to +15550001111" in bakery.stdout


def test_a_failing_service_says_why_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "agents.yaml"
    bad.write_text("agents:\n  - name: salon\n    voice: 7\n    colour: blue\n")
    run = DevRun(
        tmp_path, "--calls", "1", "--exit-when-done", env={"SWITCHBOARD_AGENTS_FILE": str(bad)}
    )
    assert run.finish() == 2
    errors = run.stderr().strip().splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith("switchboard dev: acceptor exited: ")
    assert f"{bad}:" in errors[0]
    assert "Traceback" not in run.stdout


def test_a_service_that_dies_while_serving_is_reported(tmp_path: Path) -> None:
    run = DevRun(tmp_path, "--calls", "0", "--workers", "1")
    try:
        run.wait_for_line("Ctrl-C to stop.")
        (worker,) = [p for p in run.descendants() if "worker-1" in command_line(p)]
        os.kill(worker, signal.SIGKILL)
        run.wait_for_error("switchboard dev: session-1 killed by SIGKILL")
        run.process.send_signal(signal.SIGINT)
        assert run.finish(timeout=60) == 0
    finally:
        run.kill()
