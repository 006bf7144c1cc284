"""Shared set-up for the viewer's tests: the demo region, users, and a login through the
node's own authorization-code flow (login page, password + TOTP) with a TestClient."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hie.auth.service import AuthService
from hie.auth.users import Enrolment, add_user
from hie.demo import demo_bundle
from hie.ingest import ingest_bundle

TONE_CENTRAL = "1110000011"
HANYU = "1110000029"
KUKI_DENTAL = "1130000016"


def load_demo(node: Any) -> None:
    ingest_bundle(node, demo_bundle(), source="demo:test")


def enrol(node: Any, username: str, *, org: str = TONE_CENTRAL, kind: str = "practitioner",
          roles: list[str] | None = None, patient_id: str | None = None) -> Enrolment:
    svc = AuthService.for_node(node)
    with node.engine.begin() as conn:
        return add_user(conn, svc.box, username=username, display_name=username, kind=kind,
                        organization_code=org if kind != "patient" else None,
                        practitioner_id=f"pr-{username}" if kind == "practitioner" else None,
                        patient_id=patient_id, roles=roles, now_us=node.clock.now_us())


def totp(e: Enrolment) -> str:
    import time

    import pyotp

    return pyotp.TOTP(e.totp_secret).at(time.time())


def login(client: Any, who: Enrolment, username: str, *, start: str = "/viewer/") -> Any:
    """Follow the viewer's login: the redirect to the login page, the form, the callback."""
    r = client.get(start, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields = {k: v.replace("&amp;", "&").replace("&#34;", '"') for k, v in fields.items()}
    form = {**fields, "username": username, "password": who.password, "otp": totp(who), "decision": "allow"}
    r = client.post("/auth/login", data=form, follow_redirects=False)
    assert r.status_code == 302, r.text
    target = r.headers["location"]
    assert urlsplit(target).path == "/viewer/callback", target
    r = client.get(target, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
