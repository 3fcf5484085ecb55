"""Who may use the console and how a browser proves it: pure decisions, no I/O.

A token (viewer or control) is exchanged once for a session cookie, so the token itself
never travels again, never sits in the page, a URL or browser storage. The cookie is signed
with a key derived from the configured tokens: every ingress replica accepts every other's
sessions without sharing state, and changing either token signs everyone out. Actions also
need a CSRF token derived from the session, sent in a header a cross-site form cannot set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

SESSION_TTL_S = 12 * 3600
COOKIE_NAME = "switchboard_console"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Role(StrEnum):
    VIEWER = "viewer"
    CONTROLLER = "controller"


ACTIONS = frozenset({"hangup", "transfer", "say"})


def may(role: Role, action: str) -> bool:
    """Viewers read; only controllers act on calls."""
    return role is Role.CONTROLLER or action not in ACTIONS


@dataclass(frozen=True)
class Session:
    role: Role
    expires: int  # unix seconds
    nonce: str


class ConsoleAuth:
    """Token → role, session cookie signing and checking, CSRF tokens."""

    def __init__(self, view_token: str | None, control_token: str | None) -> None:
        self._tokens = [
            (token.encode(), role)
            for token, role in ((control_token, Role.CONTROLLER), (view_token, Role.VIEWER))
            if token
        ]
        material = b"\0".join([b"switchboard-console-v1", *(t for t, _ in self._tokens)])
        self._key = hashlib.sha256(material).digest()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def role_of(self, token: str) -> Role | None:
        """The role a token signs in with; every configured token is compared (constant
        time, no early exit) so timing does not tell which one came close."""
        given = token.encode()
        found: Role | None = None
        for expected, role in self._tokens:
            if hmac.compare_digest(given, expected) and found is None:
                found = role
        return found

    def issue(self, role: Role, now: float) -> str:
        """A new signed session cookie value."""
        body = f"{role.value}.{int(now) + SESSION_TTL_S}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(b'session', body)}"

    def session(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, or None if absent, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 3:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(b"session", body)):
            return None
        role, expires, nonce = body.split(".")
        if role not in Role.__members__.values() or not expires.isdigit():
            return None
        if int(expires) <= now:
            return None
        return Session(Role(role), int(expires), nonce)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of a session: the page reads it once and sends it with actions."""
        return self._sign(b"csrf", session.nonce)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given or "", self.csrf_token(session))

    def _sign(self, purpose: bytes, body: str) -> str:
        digest = hmac.new(self._key, purpose + b"\0" + body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def secure_cookie(host: str | None) -> bool:
    """`Secure` everywhere but loopback, where a browser talks plain HTTP to `make run`."""
    return (host or "").lower() not in LOOPBACK_HOSTS


def same_origin(origin: str | None, host: str | None) -> bool:
    """A state-changing request must come from the console's own page: browsers send
    `Origin` on every POST; a missing one (old clients, curl) is left to the CSRF check."""
    if origin is None:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()
