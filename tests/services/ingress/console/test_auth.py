"""Who may sign in to the console and what a session cookie and a CSRF token prove."""

from __future__ import annotations

import pytest

from services.ingress.console.auth import (
    SESSION_TTL_S,
    ConsoleAuth,
    Role,
    may,
    same_origin,
    secure_cookie,
)

VIEW = "view-" + "v" * 32
CONTROL = "ctl-" + "c" * 32
NOW = 1_800_000_000.0


@pytest.fixture
def auth() -> ConsoleAuth:
    return ConsoleAuth(VIEW, CONTROL)


def test_each_token_signs_in_with_its_role_and_nothing_else_does(auth: ConsoleAuth) -> None:
    assert auth.role_of(VIEW) is Role.VIEWER
    assert auth.role_of(CONTROL) is Role.CONTROLLER
    for wrong in ("", VIEW[:-1], VIEW + "x", CONTROL.upper(), "Bearer " + CONTROL):
        assert auth.role_of(wrong) is None


def test_the_console_is_off_without_tokens_and_view_only_without_the_control_token() -> None:
    assert not ConsoleAuth(None, None).enabled
    assert not ConsoleAuth("", "").enabled
    view_only = ConsoleAuth(VIEW, None)
    assert view_only.enabled and view_only.role_of(VIEW) is Role.VIEWER
    assert view_only.role_of("") is None


def test_a_session_cookie_carries_its_role_until_it_expires(auth: ConsoleAuth) -> None:
    cookie = auth.issue(Role.VIEWER, NOW)
    session = auth.session(cookie, NOW + 10)
    assert session is not None and session.role is Role.VIEWER
    assert VIEW not in cookie and CONTROL not in cookie
    assert auth.session(cookie, NOW + SESSION_TTL_S) is None


def test_a_forged_or_altered_cookie_is_no_session(auth: ConsoleAuth) -> None:
    cookie = auth.issue(Role.VIEWER, NOW)
    role, expires, nonce, signature = cookie.split(".")
    for forged in (
        f"controller.{expires}.{nonce}.{signature}",  # a viewer promoting itself
        f"{role}.{int(expires) + 3600}.{nonce}.{signature}",  # extending it
        f"{role}.{expires}.{nonce}.{signature[:-1]}{'B' if signature.endswith('A') else 'A'}",
        ConsoleAuth("other", CONTROL).issue(Role.VIEWER, NOW),  # another deployment's
        "",
        None,
        "a.b.c",
        "controller.notanumber.x.y",
    ):
        assert auth.session(forged, NOW) is None


def test_changing_a_token_signs_everyone_out(auth: ConsoleAuth) -> None:
    cookie = auth.issue(Role.CONTROLLER, NOW)
    assert ConsoleAuth(VIEW, CONTROL).session(cookie, NOW) is not None  # another replica
    assert ConsoleAuth(VIEW, "ctl-rotated").session(cookie, NOW) is None


def test_csrf_tokens_belong_to_one_session(auth: ConsoleAuth) -> None:
    first = auth.session(auth.issue(Role.CONTROLLER, NOW), NOW)
    second = auth.session(auth.issue(Role.CONTROLLER, NOW), NOW)
    assert first is not None and second is not None
    assert auth.csrf_ok(first, auth.csrf_token(first))
    assert not auth.csrf_ok(first, auth.csrf_token(second))
    assert not auth.csrf_ok(first, None)
    assert not auth.csrf_ok(first, "")


def test_viewers_read_and_controllers_act() -> None:
    for action in ("hangup", "transfer", "say"):
        assert may(Role.CONTROLLER, action)
        assert not may(Role.VIEWER, action)
    assert may(Role.VIEWER, "signout")


def test_cookies_are_secure_except_on_loopback() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "LOCALHOST"):
        assert not secure_cookie(host)
    for host in ("console.example.com", "10.0.0.4", "", None):
        assert secure_cookie(host)


def test_a_post_from_another_site_is_refused() -> None:
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin(None, "127.0.0.1:8080")  # no Origin: the CSRF token decides
    assert not same_origin("https://evil.example", "127.0.0.1:8080")
    assert not same_origin("null", "127.0.0.1:8080")
    assert not same_origin("http://127.0.0.1:8080", None)
