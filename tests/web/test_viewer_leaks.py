"""Leak scan of the viewer pages (issue 14, acceptance 2): for each consent state of the leak
suite (tests/enforcement/test_leaks.py), clinicians of facilities A, B and the disclosing
facility D open the patient page and the search page. A resource the storage predicate hides
from the viewer leaves no trace in the HTML: no id, no content marker; one it shows appears
(so the scan is not vacuous), and a hidden patient's page is byte-for-byte the page of a
patient that does not exist. The consent changes between page loads of the same logged-in
sessions: revocation is effective on the next page. SQLite and PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.ingest import ingest_bundle
from tests.enforcement import test_leaks as leaks
from tests.web import viewer_helpers as vh

BASE = "http://127.0.0.1"
#: What each resource of the leak region puts on the page when the viewer sees it.
MARKERS = {
    "Patient/leakpat-1": "漏洩", "Observation/leakobs-0": "2026年10月1日", "Observation/leakobs-1": "2026年11月1日",
    "Observation/leakobs-2": "2026年11月2日", "Observation/leakobs-3": "2026年11月3日",
    "Condition/leakcond-1": "高血圧",
}
VIEWERS = {"facility-a": leaks.A, "facility-b": leaks.B, "disclosing-d": leaks.D}


def set_state(node, state: str) -> None:
    consents = leaks.consent_state(state)
    if consents:
        leaks.put_all(node, consents)
    else:
        ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Consent/leakconsent-1"}}]}, source="leak-test")


def scan(html: str, visible: set[str], echoed: set[str]) -> None:
    ids = set(leaks.ID_RE.findall(html))
    allowed_ids = {v.split("/", 1)[1] for v in visible} | echoed
    assert ids <= allowed_ids, f"hidden ids in the page: {ids - allowed_ids}"
    for ref, marker in MARKERS.items():
        if ref not in visible:
            assert marker not in html, f"{ref} hidden but its marker {marker!r} is on the page"


def test_viewer_pages_show_exactly_what_the_predicate_allows_in_every_consent_state(web_node_any):
    node = web_node_any
    leaks.put_all(node, leaks.region())
    app = create_app(node, audit=False)
    clients = {}
    for viewer, org in VIEWERS.items():
        e = vh.enrol(node, f"leakview-{viewer}", org=org)
        c = TestClient(app, base_url=BASE)
        vh.login(c, e, f"leakview-{viewer}")
        clients[viewer] = c
    shown_somewhere = set()
    for state in leaks.STATES:
        set_state(node, state)
        for viewer, c in clients.items():
            visible = leaks.allowed_ids(node, viewer)
            page = c.get("/viewer/patient/leakpat-1")
            search = c.get("/viewer/?facility=1110000011&number=leakmrn-1")
            scan(page.text, visible, echoed=set())
            scan(search.text, visible, echoed={"leakmrn-1"})  # the form shows what was asked
            if "Patient/leakpat-1" in visible:
                assert page.status_code == 200, (state, viewer)
                for ref, marker in MARKERS.items():
                    if ref in visible:
                        assert marker in page.text, f"{state}/{viewer}: {ref} visible but not shown"
                        shown_somewhere.add(ref)
                assert 'href="/viewer/patient/leakpat-1"' in search.text
            else:
                unknown = c.get("/viewer/patient/leakpat-none")
                assert page.status_code == 404 and page.text == unknown.text.replace("leakpat-none", "leakpat-1")
                assert 'id="no-results"' in search.text
    assert shown_somewhere == set(MARKERS), "the scan must see every marker shown in some state"
    assert re.search("漏洩", clients["disclosing-d"].get("/viewer/patient/leakpat-1").text)
