"""Dashboard session cookies and CSRF tokens (omops/server/_session.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from omops.catalog.keys import ApiKey
from omops.errors import Forbidden, Unauthorized
from omops.server._session import check_csrf, issue_session, parse_session

KEY = ApiKey("0123456789ab", "read", ["default"], "", dt.datetime.now(dt.UTC), None)
SECRET = b"s" * 32


def test_a_session_verifies_under_its_secret_and_has_a_csrf_token() -> None:
    value = issue_session(KEY.id, SECRET)
    session = parse_session(value).verify(KEY, SECRET)
    assert session.key == KEY and len(session.csrf) >= 40
    other = parse_session(issue_session(KEY.id, SECRET)).verify(KEY, SECRET)
    assert other.csrf != session.csrf  # a token per session, not per key


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # the signature
        lambda v: v.replace(KEY.id, "ffffffffffff"),  # another key's id
        lambda v: ".".join(
            [*v.split(".")[:2], str(int(v.split(".")[2]) + 3600), *v.split(".")[3:]]
        ),
    ],
)
def test_a_changed_cookie_is_refused(tamper) -> None:  # noqa: ANN001
    value = tamper(issue_session(KEY.id, SECRET))
    with pytest.raises(Unauthorized, match="not valid"):
        parse_session(value).verify(KEY, SECRET)


def test_another_secret_refuses_the_cookie() -> None:
    value = issue_session(KEY.id, SECRET)
    with pytest.raises(Unauthorized):
        parse_session(value).verify(KEY, b"t" * 32)


@pytest.mark.parametrize("value", ["", "x", "v1.a.b.c.d", "v2.a.1.c.d", "v1.a.1.c"])
def test_malformed_cookies_are_refused(value: str) -> None:
    with pytest.raises(Unauthorized, match="malformed"):
        parse_session(value)


def test_an_expired_session_is_refused() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        parse_session(issue_session(KEY.id, SECRET, seconds=-1))


@pytest.mark.parametrize("sent", [None, "", "wrong"])
def test_a_missing_or_wrong_csrf_token_is_forbidden(sent: str | None) -> None:
    with pytest.raises(Forbidden, match="X-CSRF-Token"):
        check_csrf(sent, "expected")
    check_csrf("expected", "expected")
    with pytest.raises(Forbidden):
        check_csrf("", "")  # no expected token: nothing matches
