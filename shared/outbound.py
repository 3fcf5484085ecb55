"""Outbound calls: an agent's dialling config, the request, and the call's record. Pure.

GPT-Live places a call itself (`POST /v1/live/sessions` with a SIP transport through the
customer's trunk). An agent that may dial has an `outbound` block in the agents file; the
trunk password is named by `password_env` (or `password_file`) and read only when a call
is dialled, so it is never in the file, a job, an event or a log.

The SIP provider rules are OpenAI's (reference §3.1): `sips:` only, no userinfo, no
private, loopback or link-local host; destinations and caller numbers are E.164.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
from datetime import time as clock
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
OUTBOUND_PREFIX = "out_"

# Names in JetStream (README "Internal subjects, streams and buckets").
OUTBOUND_STREAM = "OUTBOUND"
OUTBOUND_SUBJECT = "outbound.requests"
DIALLER_CONSUMER = "dialler"
OUTBOUND_KEYS_BUCKET = "outbound_keys"  # sha256(Idempotency-Key) → call_id, request hash
OUTBOUND_CALLS_BUCKET = "outbound_calls"  # call_id → OutboundCall (its state)
KEYS_TTL_S = 7 * 24 * 3600.0  # as long as the call's events are kept

FailReason = Literal["busy", "no_answer", "rejected", "trunk_error", "cancelled", "unconfirmed"]
CallState = Literal["queued", "dialing", "answered", "failed", "cancelled"]
Direction = Literal["inbound", "outbound"]


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


def _local_host(host: str) -> bool:
    """Loopback, private, link-local and other non-public literals, and local names."""
    name = host.lower().rstrip(".")
    if name in ("localhost",) or name.endswith((".localhost", ".local", ".internal")):
        return True
    if "." not in name and not name.startswith("["):
        return True  # a bare host name only resolves locally
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def provider_url_problem(url: str) -> str | None:
    """Why OpenAI would refuse this trunk URL (reference §3.1), or None."""
    if not url.startswith("sips:"):
        return "must be a sips: URI (OpenAI refuses plaintext sip: trunks)"
    rest = url.removeprefix("sips:")
    host_port, _, params = rest.partition(";")
    if params and params.lower() != "transport=tcp":
        return "takes no parameter but ;transport=tcp"
    if not host_port or any(c in host_port for c in "@/?&"):
        return "must be sips:host[:port] (no user part, path or headers)"
    if host_port.startswith("["):
        host, _, port = host_port.partition("]")
        host += "]"
        port = port.removeprefix(":")
    else:
        host, _, port = host_port.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f"port {port!r} is not a port"
    if _local_host(host):
        return f"host {host!r} is private, loopback or local (OpenAI refuses it)"
    return None


class Trunk(BaseModel):
    """The customer's SIP trunk; the password comes from the environment variable named."""

    model_config = ConfigDict(extra="forbid")

    provider_url: str
    caller_number: str
    username: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    # Exactly one: the environment variable holding the password, or a file holding it
    # (a mounted secret); read at each dial, so a rotated secret needs no restart.
    password_env: str | None = Field(None, pattern=ENV_NAME.pattern)
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> Trunk:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("set one of password_env or password_file (never the password)")
        return self

    @property
    def password_source(self) -> str:
        """Where the password is read from, for messages (never the password)."""
        return (
            f"variable {self.password_env}" if self.password_env else f"file {self.password_file}"
        )

    def password(self) -> str:
        """The password now, or "" when it is not there; never logged by anyone."""
        if self.password_env is not None:
            return os.environ.get(self.password_env, "")
        assert self.password_file is not None
        try:
            return self.password_file.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError):
            return ""

    @field_validator("provider_url")
    @classmethod
    def _provider(cls, value: str) -> str:
        problem = provider_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("caller_number")
    @classmethod
    def _caller(cls, value: str) -> str:
        if not is_e164(value):
            raise ValueError(f"{value!r} is not an E.164 number (+…)")
        return value


class CallingWindow(BaseModel):
    """When calls may be dialled, in the callee's time zone (`end` may pass midnight)."""

    model_config = ConfigDict(extra="forbid")

    start: clock
    end: clock
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class RetryPolicy(BaseModel):
    """More tries after a busy line or no answer, `delay_s` apart."""

    model_config = ConfigDict(extra="forbid")

    busy: int = Field(0, ge=0, le=10)
    no_answer: int = Field(0, ge=0, le=10)
    delay_s: float = Field(600.0, ge=0)


class OutboundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trunk: Trunk
    max_concurrent: int = Field(1, ge=1)  # dialling or live, across every dialler replica
    rate_per_s: float = Field(1.0, gt=0)  # dials per second, across every replica
    window: CallingWindow | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    ring_timeout_s: float = Field(60.0, gt=0, le=600)  # our own bound on a dial's outcome


class CallRequest(BaseModel):
    """`POST /calls`'s body."""

    model_config = ConfigDict(extra="forbid")

    to: str
    agent: str = Field(min_length=1, max_length=64)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("to")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not is_e164(value):
            raise ValueError("to must be an E.164 number (+ and 7 to 15 digits)")
        return value

    def fingerprint(self) -> str:
        """The same request sent again has the same fingerprint (the key's check)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class KeyRecord(BaseModel):
    """`outbound_keys`: what an Idempotency-Key was first used for."""

    call_id: str
    fingerprint: str


class OutboundCall(BaseModel):
    """`outbound_calls/<call_id>`: the call's state, changed only by compare-and-set."""

    call_id: str
    to: str
    agent: str
    context: dict[str, Any] = Field(default_factory=dict)
    state: CallState = "queued"
    tries: int = 0  # dials made (or started) so far
    not_before: float = 0.0  # epoch seconds: a retry waits until then
    session_id: str | None = None  # OpenAI's `live_…` id of the current try
    dialler: str | None = None  # who dials (or dialled) the current try
    # The OUTBOUND stream sequence of the message whose handling claimed the current try:
    # only that message coming back (its dialler stopped) may recover the claim.
    claim_seq: int | None = None
    # Where the current try's admission is held (the worker's book, the agent counted
    # toward its limit): a dialler that takes over a stopped one's try hands the booking
    # to the session job, or gives both back, rather than leaving them to lapse.
    booking: str | None = None
    counted_agent: str | None = None
    created_at: float = 0.0
    reason: FailReason | None = None

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def new_call_id() -> str:
    return OUTBOUND_PREFIX + secrets.token_hex(16)


def key_id(idempotency_key: str) -> str:
    """A KV-safe key for any Idempotency-Key (hashed: keys are the client's text)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()
