"""Token verification without the database on the hot path (issue 12, ADR 0008).

Two :class:`~hie.app.Node` instances on one database stand for two worker processes: the
first revokes, disables or rotates (through ``/auth/revoke`` and the ``hie admin`` commands,
which run as a third instance), the second verifies with its own process state. The second
one's check interval is measured on an injected clock, so "within the bound" is shown
without sleeping: still stale just before the interval, in force once it has passed.
A steady-state verification sends no statement (counted on the engine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jws
from sqlalchemy import event
from typer.testing import CliRunner

from hie.api.app import create_app
from hie.app import Node
from hie.auth import revocation
from hie.auth.cli import admin_app
from hie.auth.service import AuthService
from hie.auth.tokens import refresh_key
from hie.auth.users import reset_user
from hie.errors import Unauthenticated
from hie.storage.db import write_tx
from hie.storage.statements import install
from tests.auth import helpers as h

BASE = "http://testserver/fhir"
BOUND = 1.0  # seconds: the second instance's HIE_TOKEN_CHECK_INTERVAL_MS


class Ticks:
    """An injected monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclasses.dataclass
class Pair:
    node: Node  # the instance that changes things
    other: Node  # another worker on the same database
    ticks: Ticks

    def accepts(self, token: str, on: Node | None = None) -> bool:
        try:
            AuthService.for_node(on or self.other).authenticate_header(
                f"Bearer {token}", request_base=BASE, network_address=None)
        except Unauthenticated:
            return False
        return True

    def look(self) -> None:
        """Let the other instance's interval pass and make it look (any verification does)."""
        self.ticks.advance(BOUND)
        self.accepts("not-a-token")

    def admin(self, *args: str) -> Any:
        env = {"HIE_DATABASE_URL": self.node.settings.database_url, "HIE_DATA_DIR": str(self.node.settings.data_dir)}
        result = CliRunner().invoke(admin_app, list(args), env=env)
        return result


def _other(node: Node, interval_ms: int, ticks: Ticks) -> Node:
    other = Node(dataclasses.replace(node.settings, token_check_interval_ms=interval_ms))
    AuthService.for_node(other).tokens.status.monotonic = ticks
    return other


def _pair(node: Node) -> Iterator[Pair]:
    ticks = Ticks()
    other = _other(node, int(BOUND * 1000), ticks)
    try:
        yield Pair(node, other, ticks)
    finally:
        other.engine.dispose()
        AuthService.for_node(node).keys.load()  # key tests rotate the shared key directory


@pytest.fixture
def pair(node: Node) -> Iterator[Pair]:
    yield from _pair(node)


@pytest.fixture
def sqlite_pair(sqlite_node: Node) -> Iterator[Pair]:
    """For what does not depend on the database: keys live in files (the change log that tells
    processes to look is tested on both databases), an operator reset is a revocation."""
    yield from _pair(sqlite_node)


def _app_token(node: Node, *, refresh: bool = False, person: bool = False) -> tuple[str, str, str | None, Any]:
    """(access token, app client id, refresh token, enrolment) of an app session; a person's
    (a clinician enrolled with password and TOTP: half a second of argon2) only when asked."""
    svc = AuthService.for_node(node)
    e = h.user(node) if person else None
    cid = h.app_client(node)
    uid = e.user.user_id if e is not None else "no-one"
    with write_tx(node.engine) as conn:
        rt = svc.tokens.issue_refresh(conn, client_id=cid, user_id=uid, scope=["user/*.rs"],
                                      patient_id=None, expires_in=3600, claims={}) if refresh else None
        issued = svc.tokens.issue(conn, issuer=svc.issuer(BASE), audience=BASE, client_id=cid,
                                  kind="user" if e is not None else "client", scope=["user/*.rs", "offline_access"],
                                  expires_in=600, user=e.user if e is not None else None,
                                  organization_code=h.HOSPITAL, parent=refresh_key(rt) if rt else None)
    return issued.token, cid, rt, e


def _backend_token(node: Node) -> tuple[str, str]:
    b = h.backend(node, scope="system/*.rs")
    return AuthService.for_node(node).token_for_client(b.client_id, "system/*.rs", fhir_base=BASE).token, b.client_id


def _stale_then_refused(pair: Pair, token: str) -> None:
    """Within the bound the other instance may still accept; once it has passed, never."""
    pair.ticks.advance(BOUND * 0.9)
    assert pair.accepts(token), "the check interval is not a cache: it looked before the bound"
    pair.ticks.advance(BOUND * 0.1)
    assert not pair.accepts(token)


@pytest.mark.parametrize("which", ["access", "refresh"])
def test_revocation_endpoint_reaches_another_instance_within_the_bound(pair, which):
    token, cid, rt, _ = _app_token(pair.node, refresh=True)
    assert pair.accepts(token) and pair.accepts(token, on=pair.node)
    app = TestClient(create_app(pair.node, audit=False), base_url="http://127.0.0.1")  # OAuth: https or loopback
    data = {"token": token, "client_id": cid} if which == "access" else {
        "token": rt, "client_id": cid, "token_type_hint": "refresh_token"}
    assert app.post("/auth/revoke", data=data).status_code == 200
    assert not pair.accepts(token, on=pair.node)  # the revoking process: at once
    _stale_then_refused(pair, token)


@pytest.mark.parametrize("how", ["user", "client", "jti"])
def test_admin_revoke_tokens_reaches_another_instance_within_the_bound(pair, how):
    token, cid, _, e = _app_token(pair.node, person=how == "user")
    unrelated, _ = _backend_token(pair.node)
    assert pair.accepts(token) and pair.accepts(unrelated)
    jti = AuthService.for_node(pair.node).tokens._signature_checked(token)["jti"]
    arg = {"user": e.user.username if e else "", "client": cid, "jti": jti}[how]
    result = pair.admin("revoke-tokens", f"--{how}", arg)
    assert result.exit_code == 0 and "revoked 1 token" in result.output, result.output
    _stale_then_refused(pair, token)
    assert pair.accepts(unrelated)


def test_admin_revoke_tokens_of_nobody_fails_cleanly(pair):
    result = pair.admin("revoke-tokens", "--jti", "no-such-jti")
    assert result.exit_code == 1 and "no token" in _said(result) and "Traceback" not in result.output


@pytest.mark.parametrize("what", ["user", "client"])
def test_disabled_user_or_client_stops_working_within_the_bound_and_enabled_works_again(pair, what):
    token, cid, _, e = _app_token(pair.node, person=what == "user")
    assert pair.accepts(token)
    name = e.user.username if e is not None else cid
    assert pair.admin(f"disable-{what}", name).exit_code == 0
    _stale_then_refused(pair, token)
    assert pair.admin(f"enable-{what}", name).exit_code == 0
    pair.ticks.advance(BOUND)
    assert pair.accepts(token)


def test_operator_reset_of_a_user_revokes_their_tokens(sqlite_pair):
    pair = sqlite_pair
    token, _, _, e = _app_token(pair.node, person=True)
    assert e is not None and pair.accepts(token)
    with write_tx(pair.node.engine) as conn:
        reset_user(conn, AuthService.for_node(pair.node).box, e.user.username)
    assert not pair.accepts(token, on=pair.node)
    _stale_then_refused(pair, token)


def _said(result: Any) -> str:
    """What a failed command told the operator (printed, or carried by the error the
    ``hie`` entry point prints as one line)."""
    return result.output + str(result.exception or "")


def _kid(token: str) -> str:
    return jws.extract_compact(token.encode()).headers()["kid"]


def test_rotated_and_retired_keys_take_effect_on_another_instance_within_the_bound(sqlite_pair):
    pair = sqlite_pair
    old, _ = _backend_token(pair.node)
    old_kid = _kid(old)
    assert pair.accepts(old)
    result = pair.admin("rotate-keys")
    assert result.exit_code == 0, result.output
    pair.ticks.advance(BOUND)
    assert pair.accepts(old)  # the previous key stays published after a rotation
    new, _ = _backend_token(pair.other)  # the other worker signs with the new key now
    assert _kid(new) != old_kid and _kid(new) in result.output
    assert pair.accepts(new, on=pair.node)  # an unknown kid is looked up at once

    assert pair.admin("retire-key", old_kid).exit_code == 0
    _stale_then_refused(pair, old)
    assert pair.accepts(new)


def test_two_rotations_retire_the_first_key_and_retire_previous_retires_at_once(sqlite_pair):
    pair = sqlite_pair
    first, _ = _backend_token(pair.node)
    assert pair.accepts(first)
    assert pair.admin("rotate-keys").exit_code == 0
    assert pair.admin("rotate-keys").exit_code == 0  # keeps two keys per algorithm
    _stale_then_refused(pair, first)
    second, _ = _backend_token(pair.other)
    assert pair.accepts(second)
    assert pair.admin("rotate-keys", "--retire-previous").exit_code == 0
    _stale_then_refused(pair, second)
    assert pair.accepts(_backend_token(pair.other)[0])


def test_the_last_key_of_an_algorithm_cannot_be_retired(sqlite_pair):
    pair = sqlite_pair
    result = pair.admin("rotate-keys", "--retire-previous")
    assert result.exit_code == 0
    kid = next(w.strip(",") for w in result.output.split() if w.startswith("es256-"))
    result = pair.admin("retire-key", kid)
    assert result.exit_code == 1 and "only ES256 key" in _said(result), result.output
    pair.look()
    assert pair.accepts(_backend_token(pair.other)[0])


def test_steady_state_verification_sends_no_statement(pair):
    """Counted with the engine's statement counter (ADR 0007: cursor executions, the pool's
    pre-ping, BEGIN, COMMIT and ROLLBACK)."""
    counter = install(pair.other.engine)
    token, _ = _backend_token(pair.node)
    assert pair.accepts(token)  # first use: the token's row, once per process
    with counter.counting() as sent:
        for _ in range(5):
            assert pair.accepts(token)
    assert sent.count == 0, sent.statements
    pair.ticks.advance(BOUND)
    with counter.counting() as sent:
        assert pair.accepts(token)
    assert any("node_setting" in s for s in sent.statements), sent.statements  # the change log, once per interval


def test_interval_zero_checks_on_every_request(pair):
    other = _other(pair.node, 0, pair.ticks)
    try:
        token, cid, _, _ = _app_token(pair.node)
        assert pair.accepts(token, on=other)
        with write_tx(pair.node.engine) as conn:
            AuthService.for_node(pair.node).tokens.revoke_all(conn, client_id=cid)
        assert not pair.accepts(token, on=other)
    finally:
        other.engine.dispose()


def test_more_changes_than_the_log_keeps_drop_every_verdict(pair):
    revoked, cid, _, _ = _app_token(pair.node)
    valid, _ = _backend_token(pair.node)
    assert pair.accepts(revoked) and pair.accepts(valid)
    with write_tx(pair.node.engine) as conn:
        AuthService.for_node(pair.node).tokens.revoke_all(conn, client_id=cid)
        revocation.record(conn, *(("token", f"unrelated-{i}") for i in range(revocation.KEEP + 5)))
    with pair.node.engine.connect() as conn:
        assert len(revocation.read(conn).changes) == revocation.KEEP
    _stale_then_refused(pair, revoked)
    assert pair.accepts(valid)


def test_a_lookup_that_raced_a_revocation_is_not_kept(pair):
    """The other instance looks a token up (valid), and before it files the verdict a
    revocation commits and reaches it: that answer may serve the request in flight (within
    the bound) but must not be kept, or the token would work there for ever."""
    token, _ = _backend_token(pair.node)
    jti = AuthService.for_node(pair.node).tokens._signature_checked(token)["jti"]
    status = AuthService.for_node(pair.other).tokens.status
    pair.look()
    raced: list[bool] = []

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if raced or "auth_token" not in statement:
            return
        raced.append(True)  # the token's row has been read: valid
        with write_tx(pair.node.engine) as c:
            AuthService.for_node(pair.node).tokens.revoke(c, jti)
        pair.ticks.advance(BOUND)
        with revocation.lazy(pair.other.engine) as lazy:
            status.refresh(lazy)  # another request of that process applies the change meanwhile

    event.listen(pair.other.engine, "after_cursor_execute", after)
    try:
        pair.accepts(token)
    finally:
        event.remove(pair.other.engine, "after_cursor_execute", after)
    assert raced
    assert not pair.accepts(token)  # no clock advance: the stale verdict was not filed
