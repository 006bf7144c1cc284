"""Revocation is visible on the very next request, even with requests in flight.

A viewing facility is in the middle of paging through a patient's results and another of its
requests holds an open read transaction when the patient's Consent is revoked (status
``inactive``) through the API. The next page, the next read and the next search — all new
requests — must no longer show the patient's data.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import select

from hie.api.app import create_app
from hie.auth.service import LOCAL_CLIENT_ID, AuthService, system_token
from hie.auth.users import add_user
from hie.principal import Principal
from hie.storage.db import write_tx
from hie.storage.tables import resource
from tests.enforcement.test_leaks import A, consent_state, put_all, region
from tests.support import LiveServer

FHIR = {"Content-Type": "application/fhir+json"}


def viewer_token(node, base: str) -> str:
    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        svc.ensure_local_client(conn)
        enrol = add_user(conn, svc.box, username="inflight-a", display_name="a", kind="practitioner",
                         organization_code=A, now_us=node.clock.now_us())
        return svc.tokens.issue(conn, issuer=svc.issuer(base), audience=base, client_id=LOCAL_CLIENT_ID,
                                kind="user", scope=["user/*.rs"], expires_in=3600, user=enrol.user,
                                organization_code=A).token


def test_revocation_applies_to_the_next_request_while_others_are_in_flight(node):
    put_all(node, region())
    put_all(node, consent_state("a-only"))
    with LiveServer(create_app(node, audit=False)) as srv:
        base = f"{srv.url}/fhir"
        viewer = {"Authorization": f"Bearer {viewer_token(node, base)}"}
        admin = {"Authorization": f"Bearer {system_token(node, 'system/*.cruds', fhir_base=base)}"}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            first = c.get("/fhir/Observation?subject=Patient/leakpat-1&_count=1&_sort=date", headers=viewer).json()
            # D's two ordinary results (consented) + A's own disclosure; the PSY result stays hidden
            assert first["total"] == 3 and len(first["entry"]) == 1
            next_url = next(lnk["url"] for lnk in first["link"] if lnk["relation"] == "next")

            # a request of the viewer's still in flight: an open read transaction of its own
            in_flight = node.context(Principal(kind="user", name="a", user_id="x", organization_id=A), write=False)
            ctx = in_flight.__enter__()
            seen_before = ctx.repo.conn.execute(select(resource.c.res_id).where(
                resource.c.res_type == "Observation", ctx.access(resource))).scalars().all()
            assert "leakobs-0" in seen_before

            revoked = {**consent_state("a-only")[0], "status": "inactive"}
            done = threading.Event()

            def revoke() -> None:
                r = c.put("/fhir/Consent/leakconsent-1", content=orjson.dumps(revoked), headers={**admin, **FHIR})
                assert r.status_code == 200, r.text
                done.set()

            t = threading.Thread(target=revoke)
            t.start()
            t.join(timeout=30)
            assert done.is_set()
            in_flight.__exit__(None, None, None)

            def ids(bundle: dict) -> set[str]:
                return {e["resource"]["id"] for e in bundle.get("entry", [])}

            parts = urlsplit(next_url)  # links carry the node's configured base URL
            nxt = c.get(f"{parts.path}?{parts.query}", headers=viewer).json()
            assert nxt["total"] == 1 and ids(nxt) <= {"leakobs-3"}
            assert c.get("/fhir/Observation/leakobs-0", headers=viewer).status_code == 404
            again = c.get("/fhir/Observation?subject=Patient/leakpat-1", headers=viewer).json()
            assert again["total"] == 1 and ids(again) == {"leakobs-3"}  # only what A disclosed itself
            # the disclosing facility's own view is unchanged
            assert c.get("/fhir/Observation/leakobs-0", headers=admin).status_code == 200
