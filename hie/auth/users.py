"""People who log in: clinicians and staff of a facility, patients, and operators.

Login is two-factor (password + TOTP, or password + a single-use recovery code). After
:data:`MAX_FAILURES` consecutive failures the account is locked for
:data:`LOCK_SECONDS`; the operator can reset a user (new password, new TOTP seed, new
recovery codes, lock cleared). A locked account answers exactly like a wrong password,
so the login page does not tell an attacker which accounts exist or are locked.

Spec: MHLW 医療情報システムの安全管理に関するガイドライン 第6.0版 (two-factor
authentication, irreversible password storage); https://www.rfc-editor.org/rfc/rfc6238
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hie.auth import passwords as pw
from hie.auth.tables import auth_user as U

KINDS = ("practitioner", "staff", "patient", "operator")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    display_name: str
    kind: str
    organization_code: str | None
    practitioner_id: str | None
    patient_id: str | None
    roles: frozenset[str]
    active: bool
    #: The patient chosen for this authorization (SMART launch context), if any.
    launch_patient: str | None = None
    auth_time: int | None = None

    def get_user_id(self) -> str:  # authlib
        return self.user_id

    def with_launch(self, patient: str | None, auth_time: int | None = None) -> User:
        from dataclasses import replace

        return replace(self, launch_patient=patient, auth_time=auth_time)

    @property
    def fhir_user(self) -> str | None:
        if self.kind == "patient" and self.patient_id:
            return f"Patient/{self.patient_id}"
        if self.practitioner_id:
            return f"Practitioner/{self.practitioner_id}"
        return None


@dataclass(frozen=True)
class Enrolment:
    user: User
    password: str
    totp_secret: str
    totp_uri: str
    recovery_codes: list[str]


def _row_to_user(row: Any) -> User:
    return User(
        user_id=row.user_id, username=row.username, display_name=row.display_name, kind=row.kind,
        organization_code=row.organization_code, practitioner_id=row.practitioner_id,
        patient_id=row.patient_id, roles=frozenset((row.roles or "").split()), active=bool(row.active),
    )


def get_user(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(select(U).where(U.c.user_id == user_id)).first()
    return _row_to_user(row) if row else None


def get_by_username(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(U).where(U.c.username == username)).first()
    return _row_to_user(row) if row else None


def add_user(
    conn: Connection, box: pw.SecretBox, *, username: str, display_name: str, kind: str, now_us: int,
    password: str | None = None, organization_code: str | None = None, practitioner_id: str | None = None,
    patient_id: str | None = None, roles: list[str] | None = None, totp_secret: str | None = None,
) -> Enrolment:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if kind == "patient" and not patient_id:
        raise ValueError("a patient user needs the id of their Patient resource")
    if kind in ("practitioner", "staff") and not organization_code:
        raise ValueError("clinicians and staff act for a facility: give its medical-institution code")
    roles = list(roles or [])
    if kind == "operator" and "operator" not in roles:
        roles.append("operator")
    password = password or pw.new_password()
    secret = totp_secret or pw.new_totp_secret()
    codes = pw.new_recovery_codes()
    uid = secrets.token_hex(8)
    conn.execute(insert(U), {
        "user_id": uid, "username": username, "display_name": display_name, "kind": kind,
        "password_hash": pw.hash_password(password), "totp_secret": box.seal(secret), "last_totp_step": None,
        "recovery_hashes": " ".join(pw.recovery_hash(c) for c in codes),
        "organization_code": organization_code, "practitioner_id": practitioner_id, "patient_id": patient_id,
        "roles": " ".join(roles), "failed_logins": 0, "locked_until": None, "active": True, "created": now_us,
    })
    user = get_user(conn, uid)
    assert user is not None
    return Enrolment(user, password, secret, pw.totp_uri(secret, username), codes)


def reset_user(conn: Connection, box: pw.SecretBox, username: str, *, password: str | None = None) -> Enrolment:
    """Operator reset: new password, TOTP seed and recovery codes; unlock. Every token the
    user holds is revoked (a reset follows a lost or compromised factor)."""
    from hie.auth.tokens import TokenService

    user = get_by_username(conn, username)
    if user is None:
        raise LookupError(f"no user {username!r}")
    TokenService.revoke_all(conn, user_id=user.user_id)
    password = password or pw.new_password()
    secret = pw.new_totp_secret()
    codes = pw.new_recovery_codes()
    conn.execute(update(U).where(U.c.user_id == user.user_id).values(
        password_hash=pw.hash_password(password), totp_secret=box.seal(secret), last_totp_step=None,
        recovery_hashes=" ".join(pw.recovery_hash(c) for c in codes), failed_logins=0, locked_until=None,
        active=True,
    ))
    return Enrolment(user, password, secret, pw.totp_uri(secret, username), codes)


def set_user_active(conn: Connection, username: str, active: bool) -> User:
    """Enable or disable a user; a disabled user cannot log in, and their tokens stop working
    on every process within the token check interval (:mod:`hie.auth.revocation`)."""
    from hie.auth.revocation import record

    user = get_by_username(conn, username)
    if user is None:
        raise LookupError(f"no user {username!r}")
    conn.execute(update(U).where(U.c.user_id == user.user_id).values(active=active))
    record(conn, ("user", user.user_id), by="user-active")
    return user


class LoginFailed(Exception):
    """Wrong credentials, locked or inactive account: deliberately one error."""


def login(
    conn: Connection, box: pw.SecretBox, *, username: str, password: str, code: str, now_us: int,
) -> User:
    """Check both factors; count failures and lock; consume a TOTP step or recovery code.

    On failure the failure count has been updated on ``conn`` before :class:`LoginFailed`
    is raised: the caller must commit it (catch inside the transaction), or lockout
    would never happen."""
    row = conn.execute(select(U).where(U.c.username == username)).first()
    if row is None:
        pw.dummy_verify(password)
        raise LoginFailed()
    locked = row.locked_until is not None and row.locked_until > now_us
    ok_password = pw.verify_password(row.password_hash, password)
    step = None
    recovery_left: list[str] | None = None
    if ok_password and not locked and row.active:
        code = (code or "").strip()
        step = pw.totp_step(box.open(row.totp_secret), code, now=now_us / 1e6, last_step=row.last_totp_step)
        if step is None and code:
            hashes = (row.recovery_hashes or "").split()
            h = pw.recovery_hash(code)
            if any(hmac.compare_digest(h, x) for x in hashes):
                recovery_left = [x for x in hashes if x != h]
    if locked or not row.active or not ok_password or (step is None and recovery_left is None):
        failures = (row.failed_logins or 0) + (0 if locked else 1)
        values: dict[str, Any] = {"failed_logins": failures}
        if failures >= MAX_FAILURES and not locked:
            values["locked_until"] = now_us + LOCK_SECONDS * 1_000_000
            values["failed_logins"] = 0
        conn.execute(update(U).where(U.c.user_id == row.user_id).values(**values))
        raise LoginFailed()
    values = {"failed_logins": 0, "locked_until": None}
    if step is not None:
        values["last_totp_step"] = step
    else:
        values["recovery_hashes"] = " ".join(recovery_left or [])
    conn.execute(update(U).where(U.c.user_id == row.user_id).values(**values))
    return _row_to_user(row)


def list_users(conn: Connection) -> list[User]:
    return [_row_to_user(r) for r in conn.execute(select(U).order_by(U.c.created))]
