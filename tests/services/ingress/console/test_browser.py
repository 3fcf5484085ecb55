"""The console in a real headless Chromium against the real stack, the simulator calling.

A person signs in, watches calls arrive and talk, and (with the control token) hangs one
up; a viewer sees no buttons and the server refuses their actions; a wrong token or a
missing or forged CSRF token changes nothing. The README's screenshot comes from here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from shared.events import CallEventPublisher
from simulator import CallerScript, SimulatedCall
from tests.services.ingress.console.conftest import (
    CONTROL_TOKEN,
    SALON,
    VIEW_TOKEN,
    console_url,
)
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCREENSHOT = Path(__file__).resolve().parents[4] / "docs" / "console.png"
# The budget from an event to its line on screen is 1 s; measured well under it on
# an idle machine. The assertion leaves room for a shared, busy CI machine.
TRANSCRIPT_BOUND_S = 2.5
LATE_LINE = "Yes please, 3 pm is great. The name is Alex."


def demo_call(linger_s: float = 60) -> CallerScript:
    """`make run`'s demo conversation, staying on the line a while before hanging up."""
    demo = CallerScript.builtin("demo")
    steps = [s if s.pause != 0.5 or i == 0 else s.model_copy(update={"pause": linger_s})
             for i, s in enumerate(demo.steps)]  # fmt: skip
    return demo.model_copy(update={"steps": steps})


STAY_ON = CallerScript.model_validate(
    {"steps": [{"say": "Hello, is anyone there?", "reply": "Yes, how can I help?"}]}
)


async def sign_in(page: Page, stack: Stack, token: str) -> None:
    await page.goto(console_url(stack))
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#feed-state")).to_have_text("live")


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


async def test_a_wrong_token_is_refused_with_a_clear_message(
    console_stack: Stack, page: Page
) -> None:
    await page.goto(console_url(console_stack))
    await expect(page.get_by_label("Access token")).to_be_focused()
    await page.keyboard.type("not-the-token")  # keyboard only: type, Enter
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(
        "That token is not valid. Check it and try again."
    )
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.get_by_label("Access token").input_value() == ""


async def test_a_controller_hangs_up_a_call_and_sees_it_end(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, CONTROL_TOKEN)
    call = await stack.simulator.place_call(STAY_ON)
    await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
    await page.locator(f'tr[data-call="{call.call_id}"] button').click()
    await expect(page.locator("#timeline")).to_contain_text("Hello, is anyone there?")

    await page.get_by_role("button", name="Hang up").click()

    await expect(page.locator("#outcome")).to_have_text("Call ended (operator_hangup).")
    await expect(page.locator(f'#rows tr[data-call="{call.call_id}"]')).to_have_count(0)
    await expect(page.locator(f'#recent-rows tr[data-call="{call.call_id}"]')).to_contain_text(
        "operator_hangup"
    )
    await expect(page.get_by_role("button", name="Hang up")).to_be_disabled()
    await page.keyboard.press("Escape")  # the keyboard closes the call's view
    await expect(page.locator("#call")).to_be_hidden()
    # Focus returns to the call's row, now among the recent calls.
    await expect(
        page.locator(f'#recent-rows tr[data-call="{call.call_id}"] button')
    ).to_be_focused()
    assert call.end_reason == "hangup"


async def test_a_controller_has_the_agent_speak_then_transfers_to_a_named_target(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, CONTROL_TOKEN)
    call = await stack.simulator.place_call(STAY_ON, to=SALON)
    await page.locator(f'tr[data-call="{call.call_id}"] button').click()
    await expect(page.locator("#timeline")).to_contain_text("Hello, is anyone there?")

    await page.get_by_label("Tell the agent to say").fill("Say: Your car is ready.")
    await page.get_by_role("button", name="Say").click()
    await expect(page.locator("#timeline")).to_contain_text("Agent:Your car is ready.")
    await expect(page.locator("#outcome")).to_have_text("The agent spoke.")

    await page.get_by_label("Transfer to a named target").select_option("reception")
    await page.get_by_role("button", name="Transfer").click()
    await expect(page.locator("#outcome")).to_have_text("Call ended (transferred).")
    await expect(page.locator("#timeline")).to_contain_text("Transferred to reception")
    assert call.refer_targets == ["tel:+61290000000"]


async def test_a_call_moving_to_another_worker_shows_as_a_re_attach(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, VIEW_TOKEN)
    call = await stack.simulator.place_call(STAY_ON)
    await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
    first = stack.events.of_type(call.call_id, "session.attached")[0].data["worker"]
    await page.locator(f'tr[data-call="{call.call_id}"] button').click()
    await expect(page.locator("#timeline")).to_contain_text(f"Attached to {first}")

    owner = next(w for w in stack.session_workers if w.worker_id == first)
    stack.session_workers.remove(owner)
    await stack.add_worker()  # keeps the module's stack at two workers
    await owner.stop()  # a deploy: the call is handed to the other worker

    await stack.events.wait_for(call.call_id, "session.attached", count=2, timeout=20)
    second = stack.events.of_type(call.call_id, "session.attached")[1].data["worker"]
    await expect(page.locator("#timeline")).to_contain_text(
        f"Re-attached to {second} (attempt 2): the call moved to another worker"
    )
    row = page.locator(f'tr[data-call="{call.call_id}"]')
    await expect(row).to_contain_text(f"{second} (re-attached, 2)")
    await hang_up_all(stack, [call])


async def test_a_viewer_sees_no_buttons_and_is_refused_every_action(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, VIEW_TOKEN)
    await expect(page.locator("#who")).to_contain_text("viewer")
    call = await stack.simulator.place_call(STAY_ON)
    await page.locator(f'tr[data-call="{call.call_id}"] button').click()
    await expect(page.locator("#timeline")).to_contain_text("Hello, is anyone there?")

    for name in ("Say", "Transfer", "Hang up"):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    statuses = await post_from_page(page, call.call_id, with_csrf=True)
    assert statuses == {"hangup": 403, "transfer": 403, "say": 403}
    assert call.state == "accepted"
    await hang_up_all(stack, [call])


async def test_a_missing_or_forged_csrf_token_is_refused(console_stack: Stack, page: Page) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, CONTROL_TOKEN)
    call = await stack.simulator.place_call(STAY_ON)
    await stack.events.wait_for(call.call_id, "session.attached", timeout=20)

    assert await post_from_page(page, call.call_id, with_csrf=False) == {
        "hangup": 403, "transfer": 403, "say": 403,
    }  # fmt: skip
    assert await post_from_page(page, call.call_id, csrf="forged-token") == {
        "hangup": 403, "transfer": 403, "say": 403,
    }  # fmt: skip
    assert call.state == "accepted" and not call.refer_targets
    assert not stack.events.of_type(call.call_id, "call.ended")
    await hang_up_all(stack, [call])


async def test_a_controller_watches_three_demo_calls_and_their_transcripts(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    assert stack.simulator is not None
    await sign_in(page, stack, CONTROL_TOKEN)
    await expect(page.locator("#who")).to_contain_text("controller")
    calls = [await stack.simulator.place_call(demo_call(), to=SALON) for _ in range(3)]

    for call in calls:
        row = page.locator(f'tr[data-call="{call.call_id}"]')
        await expect(row).to_contain_text("salon")
        await expect(row).to_contain_text(SALON)
        await expect(row).to_contain_text("+14155550123")
        await expect(row).to_contain_text("Realtime")
    await expect(page.locator("#live-count")).to_have_text("3")

    watched = calls[0]
    await page.get_by_role("button", name=f"Open call to {SALON}").first.focus()
    await page.locator(f'tr[data-call="{watched.call_id}"] button').click()
    await expect(page.locator("#call-title")).to_be_focused()
    await page.evaluate(
        """(text) => {
            window.__seenAt = null;
            new MutationObserver((_, observer) => {
                for (const li of document.querySelectorAll('#timeline li')) {
                    if (li.textContent.includes(text)) {
                        window.__seenAt = Date.now(); observer.disconnect(); return;
                    }
                }
            }).observe(document.getElementById('timeline'), {childList: true});
        }""",
        LATE_LINE,
    )
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("Thanks for calling Bella Salon")
    await expect(timeline).to_contain_text("check_availability")
    await expect(timeline).to_contain_text(LATE_LINE, timeout=15_000)
    await stack.events.wait_for(watched.call_id, "transcript.caller", count=2)
    said = next(
        e
        for e in stack.events.of_type(watched.call_id, "transcript.caller")
        if e.data["text"] == LATE_LINE
    )
    seen_at = await page.evaluate("window.__seenAt")
    latency = seen_at / 1000 - said.ts.timestamp()
    print(f"transcript line on screen {latency * 1000:.0f} ms after its event")
    assert 0 <= latency < TRANSCRIPT_BOUND_S

    await expect(page.locator("#timeline")).to_contain_text("Done, Alex")
    shot = await page.screenshot(full_page=False)
    assert shot.startswith(b"\x89PNG")
    if os.environ.get("SWITCHBOARD_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot)

    # Filtering narrows the rows to the agent or number typed.
    await page.get_by_label("Filter by agent or number").fill("support")
    await expect(page.locator("#empty")).to_have_text("No live call matches the filter.")
    await page.get_by_label("Filter by agent or number").fill("+6146800")
    await expect(page.locator("#rows tr[data-call]")).to_have_count(3)

    # The token is nowhere the page can reach: not in storage, cookies or the document.
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert CONTROL_TOKEN not in await page.content()
    await hang_up_all(stack, calls)


async def test_a_thousand_live_calls_draw_only_the_rows_in_view(
    console_stack: Stack, page: Page
) -> None:
    stack = console_stack
    await sign_in(page, stack, VIEW_TOKEN)
    nc = await nats.connect(stack.nats_url)
    publisher = CallEventPublisher(nc.jetstream())
    calls = [f"rtc_bulk{n:04d}" for n in range(1000)]
    for call_id in calls:  # oldest first: the first call ends up at the bottom
        await publisher.publish(call_id, "call.accepted", {"agent": "bulk"})

    await expect(page.locator("#live-count")).to_have_text("1000")
    drawn = await page.locator("#rows tr[data-call]").count()
    assert 0 < drawn < 80
    newest = page.locator(f'tr[data-call="{calls[-1]}"]')
    await publisher.publish(calls[-1], "transcript.caller", {"text": "Still here"})
    await expect(newest).to_contain_text("caller: Still here")

    await page.locator("#scroller").evaluate("s => { s.scrollTop = s.scrollHeight; }")
    await expect(page.locator(f'tr[data-call="{calls[0]}"]')).to_have_count(1)
    await expect(newest).to_have_count(0)
    assert await page.locator("#rows tr[data-call]").count() < 80

    for call_id in calls:
        await publisher.publish(call_id, "call.ended", {"reason": "caller_hangup"})
    await expect(page.locator("#live-count")).to_have_text("0")
    await nc.close()


async def post_from_page(
    page: Page, call_id: str, with_csrf: bool = True, csrf: str | None = None
) -> dict[str, int]:
    """Each action POSTed from the signed-in page itself (its cookie, its origin)."""
    return await page.evaluate(
        """async ([callId, withCsrf, forged]) => {
            const session = await (await fetch('/console/api/session')).json();
            const bodies = {hangup: '', transfer: '{"target":"tel:+61290000000"}',
                            say: '{"instructions":"Say: hello"}'};
            const statuses = {};
            for (const [action, body] of Object.entries(bodies)) {
                const headers = {'Content-Type': 'application/json'};
                if (forged) headers['X-CSRF-Token'] = forged;
                else if (withCsrf) headers['X-CSRF-Token'] = session.csrf;
                const reply = await fetch(`/console/api/calls/${callId}/${action}`,
                                          {method: 'POST', headers, body});
                statuses[action] = reply.status;
            }
            return statuses;
        }""",
        [call_id, with_csrf, csrf],
    )


async def hang_up_all(stack: Stack, calls: list[SimulatedCall]) -> None:
    """End a test's calls so the next test starts with none live (via the simulator: the
    caller hangs up)."""
    for call in calls:
        if call.live:
            await call.hang_up()
    for call in calls:
        await stack.events.wait_for(call.call_id, "call.ended", timeout=15)
