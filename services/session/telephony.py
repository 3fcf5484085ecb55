"""Telephony actions on a live call: transfer (SIP REFER) and what counts as its outcome.

The model never dials: it picks one of the profile's named targets and Switchboard looks
the number up, so a prompt injection cannot send a caller to an arbitrary number. REFER is
known to answer 200 and then do nothing, so a 200 proves nothing: the transfer succeeded
only when the call leaves us (the sideband closes and a re-attach answers 404) before the
tool's `timeout_s`; otherwise it failed and the model is told so it can carry on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.agents import AgentProfile, BuiltinTool
from shared.uris import is_dialable


def builtin_tool(agent: AgentProfile, name: str) -> BuiltinTool | None:
    return next((t for t in agent.tools if isinstance(t, BuiltinTool) and t.builtin == name), None)


@dataclass(frozen=True)
class TransferTarget:
    name: str  # what the model or operator asked for
    uri: str


@dataclass(frozen=True)
class TransferRefused:
    target: str
    reason: str  # machine-readable, goes into `transfer.failed`
    message: str  # what the model is told


def resolve_model_target(agent: AgentProfile, arguments: dict[str, Any] | None) -> (
    TransferTarget | TransferRefused
):  # fmt: skip
    """The URI of the named target the model chose; raw numbers are refused."""
    tool = builtin_tool(agent, "transfer_call")
    name = str((arguments or {}).get("target", ""))[:64]
    if tool is None:
        return TransferRefused(name, "not_allowed", "transfers are not available on this line")
    uri = tool.targets.get(name)
    if uri is None:
        choices = ", ".join(sorted(tool.targets)) or "none"
        return TransferRefused(
            name, "unknown_target", f"unknown transfer target; choose one of: {choices}"
        )
    return TransferTarget(name, uri)


def resolve_operator_target(agent: AgentProfile, target: str) -> TransferTarget | TransferRefused:
    """An operator may name a profile target or give a `tel:`/`sip:` URI."""
    tool = builtin_tool(agent, "transfer_call")
    if tool is not None and target in tool.targets:
        return TransferTarget(target, tool.targets[target])
    if is_dialable(target):
        return TransferTarget(target, target)
    return TransferRefused(target[:64], "invalid_target", "not a tel: or sip: URI")


@dataclass
class PendingTransfer:
    """A REFER that answered 200 and whose outcome is not known yet."""

    target: TransferTarget
    deadline: float  # monotonic
    tool_call_id: str | None  # None when an operator asked
