"""Two-factor login (argon2 password + TOTP, single-use codes, recovery codes, lockout,
operator reset) and SMART v2 scope granting.

Spec: MHLW guideline v6.0 (two-factor authentication); https://www.rfc-editor.org/rfc/rfc6238 ;
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
"""

from __future__ import annotations

import time

import pytest

from hie.auth import scopes as sc
from hie.auth.service import AuthService
from hie.auth.users import MAX_FAILURES, LoginFailed, login, reset_user
from tests.auth import helpers as h


def _login(node, username, password, code, now=None):
    """As the login route does: the failure count is committed, then the failure raised."""
    svc = AuthService.for_node(node)
    failed = None
    with node.engine.begin() as conn:
        try:
            return login(conn, svc.box, username=username, password=password, code=code,
                         now_us=int((now or time.time()) * 1_000_000))
        except LoginFailed as exc:
            failed = exc
    raise failed


def test_password_and_totp_both_needed_and_a_code_works_once(sqlite_node):
    e = h.user(sqlite_node)
    with node_raises():
        _login(sqlite_node, "dr-tanaka", e.password, "")
    with node_raises():
        _login(sqlite_node, "dr-tanaka", "wrong-password-123", h.totp_now(e))
    code = h.totp_now(e)
    assert _login(sqlite_node, "dr-tanaka", e.password, code).username == "dr-tanaka"
    with node_raises():
        _login(sqlite_node, "dr-tanaka", e.password, code)  # replayed within its window


def test_recovery_codes_are_single_use(sqlite_node):
    e = h.user(sqlite_node)
    assert _login(sqlite_node, "dr-tanaka", e.password, e.recovery_codes[0]).user_id == e.user.user_id
    with node_raises():
        _login(sqlite_node, "dr-tanaka", e.password, e.recovery_codes[0])
    assert _login(sqlite_node, "dr-tanaka", e.password, e.recovery_codes[1])


def test_lockout_after_repeated_failures_and_operator_reset(sqlite_node):
    e = h.user(sqlite_node)
    for _ in range(MAX_FAILURES):
        with node_raises():
            _login(sqlite_node, "dr-tanaka", "wrong-password-123", "123456")
    with node_raises():  # locked: even the right factors fail
        _login(sqlite_node, "dr-tanaka", e.password, h.totp_now(e))
    svc = AuthService.for_node(sqlite_node)
    with sqlite_node.engine.begin() as conn:
        fresh = reset_user(conn, svc.box, "dr-tanaka")
    assert _login(sqlite_node, "dr-tanaka", fresh.password, h.totp_now(fresh)).username == "dr-tanaka"
    with node_raises():
        _login(sqlite_node, "dr-tanaka", e.password, h.totp_now(e))  # the old password is gone


def test_passwords_are_stored_as_argon2id_hashes(sqlite_node):
    from sqlalchemy import select

    from hie.auth.tables import auth_user

    e = h.user(sqlite_node)
    with sqlite_node.engine.connect() as conn:
        stored, secret = conn.execute(select(auth_user.c.password_hash, auth_user.c.totp_secret)).one()
    assert stored.startswith("$argon2id$") and e.password not in stored
    assert e.totp_secret.encode() not in bytes(secret)


class node_raises:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        assert kind is LoginFailed, f"expected LoginFailed, got {kind}"
        return True


@pytest.mark.parametrize(("requested", "allowed", "contexts", "granted"), [
    ("system/*.cruds", "system/*.rs", ("system",), ["system/*.rs"]),
    ("system/Observation.read", "system/*.cruds", ("system",), ["system/Observation.rs"]),
    ("patient/*.rs user/*.rs", "patient/*.rs user/*.rs", ("patient",), ["patient/*.rs"]),
    ("patient/Observation.rs?category=laboratory", "patient/*.rs", ("patient",), []),
    ("patient/Observation.sr", "patient/*.rs", ("patient",), []),  # letters out of order: invalid
    ("openid fhirUser offline_access", "openid fhirUser", ("user",), ["openid", "fhirUser"]),
    ("user/Observation.cruds", "user/Patient.rs", ("user",), []),
])
def test_scope_granting(requested, allowed, contexts, granted):
    assert sc.grant(requested, allowed, contexts=contexts) == granted


def test_registered_physician_runs_to_31_march_and_renews_unless_withdrawn():
    from datetime import date

    from hie.auth.registry import REGISTERED_PHYSICIAN, fiscal_year_end, practitioner_role, renewed

    assert fiscal_year_end(date(2026, 4, 1)) == date(2027, 3, 31)
    assert fiscal_year_end(date(2027, 3, 31)) == date(2027, 3, 31)
    role = practitioner_role(rid="r1", practitioner_id="pr1", organization_id="hosp", role=REGISTERED_PHYSICIAN,
                             start=date(2026, 6, 10))
    assert role["period"] == {"start": "2026-06-10", "end": "2027-03-31"}
    assert renewed(role, date(2027, 3, 31)) is None
    assert renewed(role, date(2027, 4, 1))["period"]["end"] == "2028-03-31"
    assert renewed({**role, "active": False}, date(2027, 4, 1)) is None
