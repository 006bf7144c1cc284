"""Viewer sessions live in the database, sealed: a session started on one worker process is
served by another (two nodes on one database stand for two workers), and the stored row holds
no usable token."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient
from sqlalchemy import select

from hie.api.app import create_app
from hie.app import Node
from hie.web.tables import viewer_session
from tests.web import viewer_helpers as vh


def test_a_session_started_on_one_worker_is_served_by_another_and_is_sealed(web_node):
    node = web_node
    vh.load_demo(node)
    dr = vh.enrol(node, "dr-workers")
    other = Node(dataclasses.replace(node.settings))  # a second worker process: same database and keys
    try:
        with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1") as first:
            vh.login(first, dr, "dr-workers")
            cookie = first.cookies.get("hie_viewer")
        with TestClient(create_app(other, audit=False), base_url="http://127.0.0.1",
                        cookies={"hie_viewer": cookie}) as second:
            page = second.get("/viewer/patient/demo-p1", follow_redirects=False)
            assert page.status_code == 200 and "山田 太郎" in page.text
        with node.engine.connect() as conn:
            rows = conn.execute(select(viewer_session.c.sid_hash, viewer_session.c.state)).all()
        assert rows and all(cookie not in r.sid_hash for r in rows)
        assert all(b"eyJ" not in r.state and b"access_token" not in r.state for r in rows)  # no JWT, no JSON
    finally:
        other.close()


def test_the_session_id_changes_at_login(web_node):
    """Session fixation: the id the browser held before logging in is not the logged-in one."""
    from fastapi.testclient import TestClient

    node = web_node
    dr = vh.enrol(node, "dr-fixation")
    with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1") as c:
        c.get("/viewer/", follow_redirects=False)
        before = c.cookies.get("hie_viewer")
        vh.login(c, dr, "dr-fixation")
        after = c.cookies.get("hie_viewer")
        assert before and after and after != before
        assert c.get("/viewer/", follow_redirects=False).status_code == 200
    with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1",
                    cookies={"hie_viewer": before}) as planted:
        assert planted.get("/viewer/", follow_redirects=False).status_code == 303  # the old id is nobody's


def test_anonymous_requests_store_nothing(web_node):
    """A browser that only starts a login carries the pending login sealed in its cookie: no
    row, no write transaction; a forged pending cookie is no login."""
    from fastapi.testclient import TestClient
    from sqlalchemy import func

    node = web_node
    with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1") as c:
        for _ in range(5):
            fresh = TestClient(c.app, base_url="http://127.0.0.1")
            assert fresh.get("/viewer/patient/x", follow_redirects=False).status_code == 303
        forged = TestClient(c.app, base_url="http://127.0.0.1", cookies={"hie_viewer": "login.AAAA"})
        assert forged.get("/viewer/callback?code=x&state=y").status_code == 400
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(viewer_session)).scalar() == 0
