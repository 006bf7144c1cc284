"""H9 wave-3 finding 8: refresh-token rotation is atomic.

The refresh grant read the token, issued new ones, then revoked the old one: concurrent uses
of one refresh token each got a new pair (a stolen token raced against its owner kept working).
The old token is now claimed (``UPDATE ... WHERE revoked = false``) in the write transaction
that issues the new ones (hie/auth/server.py), so exactly one use succeeds. The viewer's
concurrent page requests of one session share that one rotation (hie/web/session.py), so the
fix does not log a clinician out. Threads start together at a barrier; SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hie.auth.server import HieAuthorizationServer, HieRequest
from hie.auth.service import AuthService
from hie.storage.db import write_tx
from tests.auth import helpers as h
from tests.web.conftest import web_node_any  # noqa: F401  (fixture)

N = 6
ORIGIN = "http://127.0.0.1"
BASE = f"{ORIGIN}/fhir"


def _refresh_token(node: Any, client_id: str, user_id: str, access: str) -> str:
    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        return svc.tokens.issue_refresh(conn, client_id=client_id, user_id=user_id,
                                        scope=["openid", "fhirUser", access, "user/*.rs"],
                                        patient_id=None, expires_in=3600, claims={})


def _together(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_uses_of_one_refresh_token_issue_exactly_once(node):
    dr = h.user(node)
    cid = h.app_client(node)
    rt = _refresh_token(node, cid, dr.user.user_id, "offline_access")
    server = node.service("authz", lambda: HieAuthorizationServer(node, AuthService.for_node(node)))

    def use(_i: int) -> tuple[int, Any]:
        req = HieRequest("POST", f"{ORIGIN}/auth/token", {"content-type": "application/x-www-form-urlencoded"}, [],
                         [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", cid)],
                         fhir_base=BASE)
        status, body, _ = server.create_token_response(req)
        return status, body

    answers = _together(N, use)
    statuses = sorted(s for s, _ in answers)
    shown = [(s, b.get("error")) for s, b in answers]  # never the tokens
    assert statuses == [200] + [400] * (N - 1), shown
    assert all(error == "invalid_grant" for s, error in shown if s != 200), shown
    new = next(b for s, b in answers if s == 200)
    assert new["refresh_token"] != rt and use(0)[0] == 400  # the old one stays used


def test_concurrent_page_requests_of_one_viewer_session_share_one_refresh(web_node_any):
    """Two page requests of one session loaded with the same expired access token: both get
    the clinician's principal (one rotation), neither is logged out."""
    from hie.web.session import Session, ensure_client, principal

    node = web_node_any
    dr = h.user(node)
    cid = ensure_client(node, ORIGIN)
    rt = _refresh_token(node, cid, dr.user.user_id, "online_access")

    def page(_i: int) -> Any:
        copy = Session("h10-race", "csrf", 0.0, access_token="expired", refresh_token=rt)
        return principal(node, copy, ORIGIN, None), copy

    pages = _together(N, page)
    users = [p.user_id for p, _ in pages]
    assert users == [dr.user.user_id] * N
    distinct, rotated = len({s.access_token for _, s in pages}), pages[0][1].refresh_token != rt
    assert distinct == 1 and rotated
