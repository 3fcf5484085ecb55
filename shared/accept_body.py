"""The accept request body, in OpenAI's GA shape, built from an agent profile. Pure.

Only what OpenAI takes on a SIP accept: no `audio.*.format` (the codec is negotiated in
SDP; forcing one gave static or silence) and none of the VAD tuning fields that SIP
accepts refuse (`threshold`, `prefix_padding_ms`, `silence_duration_ms`).
"""

from __future__ import annotations

from typing import Any

from shared.agents import AgentProfile, BuiltinTool, FunctionTool
from shared.openai_shapes import check_accept_body

# The tools Switchboard runs itself, as the model sees them.
BUILTIN_TOOL_DEFINITIONS: dict[str, dict[str, Any]] = {
    "end_call": {
        "type": "function",
        "name": "end_call",
        "description": "End the phone call. Say goodbye first; the call ends when you finish.",
        "parameters": {"type": "object", "properties": {}},
    },
    "transfer_call": {
        "type": "function",
        "name": "transfer_call",
        "description": "Transfer the caller to one of the named destinations.",
        "parameters": {
            "type": "object",
            "properties": {"target": {"type": "string", "description": "destination name"}},
            "required": ["target"],
        },
    },
}


def tool_definitions(agent: AgentProfile) -> list[dict[str, Any]]:
    definitions: list[dict[str, Any]] = []
    for tool in agent.tools:
        if isinstance(tool, FunctionTool):
            definitions.append(
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }
            )
        elif isinstance(tool, BuiltinTool):
            definition = dict(BUILTIN_TOOL_DEFINITIONS[tool.builtin])
            if tool.builtin == "transfer_call" and tool.targets:
                definition["parameters"] = {
                    "type": "object",
                    "properties": {"target": {"type": "string", "enum": sorted(tool.targets)}},
                    "required": ["target"],
                }
            definitions.append(definition)
    return definitions


def accept_body(agent: AgentProfile) -> dict[str, Any]:
    audio_input: dict[str, Any] = {}
    if agent.transcription:
        audio_input["transcription"] = agent.transcription
    # Explicit null = no VAD (the greeting then cannot be cut short by echo).
    audio_input["turn_detection"] = agent.turn_detection
    body: dict[str, Any] = {
        "type": "realtime",
        "model": agent.model,
        "instructions": agent.instructions,
        "audio": {"input": audio_input, "output": {"voice": agent.voice}},
    }
    tools = tool_definitions(agent)
    if tools:
        body["tools"] = tools
    # Built as, and held to, the SDK's accept params: a body OpenAI would refuse is a bug
    # here (profiles are checked with the same types when they load), never a dead call.
    check_accept_body(body)
    return body
