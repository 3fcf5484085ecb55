"""Turn-taking and tool-output buffering (services/session/turns.py). Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.session.sideband import Command, Speak, ToolOutput
from services.session.turns import CONTINUE, Turns, greeting

HELLO = greeting("Hello")
SAY = Speak("operator", "Say: one moment")


def test_the_greeting_goes_first_and_requests_wait_for_the_running_response() -> None:
    turns = Turns()
    assert turns.speak(SAY) == []  # no socket yet
    assert turns.attached(HELLO) == [HELLO]
    turns.response_started()
    assert turns.speak(Speak("idle_prompt", "Say: hello?")) == []
    assert turns.response_done()[1] == [SAY]
    assert turns.response_done()[1] == [Speak("idle_prompt", "Say: hello?")]
    assert turns.response_done()[1] == []


def test_tool_outputs_wait_for_the_response_that_asked_then_go_with_one_continue() -> None:
    turns = Turns()
    turns.attached()
    turns.response_started()
    assert turns.tool_output(ToolOutput("a", "1")) == []
    assert turns.tool_output(ToolOutput("b", "2")) == []
    turns.speak(SAY)
    # Outputs before queued requests: the model is waiting for them.
    assert turns.response_done()[1] == [ToolOutput("a", "1"), ToolOutput("b", "2"), CONTINUE]
    assert turns.response_done()[1] == [SAY]


def test_an_output_with_no_response_running_goes_at_once() -> None:
    turns = Turns()
    turns.attached()
    assert turns.tool_output(ToolOutput("a", "1")) == [ToolOutput("a", "1"), CONTINUE]


def test_a_request_refused_as_a_conflict_goes_again_after_the_running_response() -> None:
    turns = Turns()
    assert turns.attached(HELLO) == [HELLO]
    turns.conflict()  # a response started by the caller's speech was running
    assert turns.responding
    assert turns.response_done()[1] == [HELLO]


def test_commands_the_socket_did_not_take_go_after_re_attach() -> None:
    turns = Turns()
    turns.attached()
    sent = turns.tool_output(ToolOutput("a", "1"))
    turns.unsent(sent)  # the socket went
    turns.detached()
    assert turns.speak(SAY) == []
    # A new socket: no response known; the output and its continue first, then the rest.
    assert turns.attached() == [ToolOutput("a", "1"), CONTINUE]
    assert turns.response_done()[1] == [SAY]


def test_only_the_continue_unsent_is_sent_alone() -> None:
    turns = Turns()
    turns.attached()
    sent = turns.tool_output(ToolOutput("a", "1"))
    turns.unsent(sent[1:])  # the output went, its continue did not
    turns.detached()
    assert turns.attached() == [CONTINUE]


def test_an_api_without_conflicts_speaks_at_once() -> None:
    turns = Turns(responses_conflict=False)
    turns.attached()
    turns.response_started()
    assert turns.speak(SAY) == [SAY]
    assert turns.tool_output(ToolOutput("a", "1")) == []
    assert turns.response_done()[1] == [ToolOutput("a", "1"), CONTINUE]


# -- invariants -----------------------------------------------------------------------------

_STEP = st.one_of(
    st.just(("speak",)),
    st.tuples(st.just("output"), st.integers(0, 1000)),
    st.just(("started",)),
    st.just(("done",)),
    st.just(("conflict",)),
    st.just(("drop",)),
)


@given(st.lists(_STEP, max_size=60))
def test_one_response_at_a_time_and_every_output_sent_once(steps: list[tuple]) -> None:
    """Whatever happens: never a second request out while one is (a conflict), every
    tool output sent once, followed by a continue, and nothing lost or invented."""
    turns = Turns()
    turns.attached()
    out: list[Command] = []
    asked_outputs: list[str] = []
    outstanding = False  # a request of ours is out and unanswered
    speaks = 0

    def send(commands: list[Command], drop: bool = False) -> None:
        nonlocal outstanding
        requests = [c for c in commands if isinstance(c, Speak)]
        assert len(requests) <= 1
        if requests:
            assert not outstanding, "a second request while one is out"
            outstanding = True
        if drop:
            turns.unsent(commands)
            outstanding = False
            return
        out.extend(commands)

    for step in steps:
        if step[0] == "speak":
            speaks += 1
            send(turns.speak(Speak("operator", f"Say: {speaks}")))
        elif step[0] == "output":
            tool_call_id = f"call_{len(asked_outputs)}"
            asked_outputs.append(tool_call_id)
            send(turns.tool_output(ToolOutput(tool_call_id, str(step[1]))))
        elif step[0] == "started":
            turns.response_started()
        elif step[0] == "done":
            outstanding = False
            send(turns.response_done()[1])
        elif step[0] == "conflict":
            outstanding = False
            turns.conflict()
        else:  # the socket drops; the next one drops what it was given; a third holds
            turns.detached()
            outstanding = False
            send(turns.attached(), drop=True)
            turns.detached()
            send(turns.attached())
    # Let every response end: everything asked for goes out.
    for _ in range(speaks + len(asked_outputs) + 2):
        outstanding = False
        send(turns.response_done()[1])
    sent_outputs = [c.tool_call_id for c in out if isinstance(c, ToolOutput)]
    assert sorted(sent_outputs) == sorted(asked_outputs)
    for index, command in enumerate(out):
        if isinstance(command, ToolOutput):
            following = next(c for c in out[index:] if isinstance(c, Speak))
            assert following.purpose == "continue"
    said = {c.instructions for c in out if isinstance(c, Speak) and c.purpose == "operator"}
    assert said == {f"Say: {n}" for n in range(1, speaks + 1)}
