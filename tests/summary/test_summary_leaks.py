"""``$summary`` under every consent state of the leak suite (tests/enforcement/test_leaks.py):
for each viewer (facility A, facility B, the disclosing facility D, the patient) the document
holds only what the storage predicate lets that viewer see, names no hidden resource (ids
and content markers scanned in the whole JSON), hints at nothing (no "withheld", empty
required sections say ``unavailable`` whatever the reason), and a hidden patient answers
exactly like an unknown one. The newest visible lab result is the one shown, so a hidden
newer one neither shows nor displaces it. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.enforcement.test_leaks import ID_RE, STATES, allowed_ids, consent_state, put_all, region, tokens
from tests.summary.summary_support import check_document, section_refs

VIEWERS = ("facility-a", "facility-b", "disclosing-d", "patient")
#: Content of each region resource that only that resource carries.
MARKERS = {
    **{f"Observation/leakobs-{i}": f"leakident-{i}" for i in range(4)},
    "Condition/leakcond-1": "高血圧",
    "Patient/leakpat-2": "別人",
}
OBS_DATES = {f"Observation/leakobs-{i}": d for i, d in enumerate(
    ["2026-10-01", "2026-11-01", "2026-11-02", "2026-11-03"])}


def _missing(client: TestClient, token: str, pid: str) -> tuple[int, str]:
    r = client.get(f"/fhir/Patient/{pid}/$summary", headers={"Authorization": f"Bearer {token}"})
    issue = r.json()["issue"][0]
    return r.status_code, f"{issue['code']} {issue['details']['coding'][0]['code']} " + \
        issue["diagnostics"].replace(pid, "<id>")


def _check_viewer(client: TestClient, token: str, allowed: set[str], hidden: set[str], viewer: str) -> None:
    r = client.get("/fhir/Patient/leakpat-1/$summary", headers={"Authorization": f"Bearer {token}"})
    if "Patient/leakpat-1" not in allowed:
        assert (r.status_code, _missing(client, token, "leakpat-1")[1]) == _missing(client, token, "leakpat-none")
        return
    assert r.status_code == 200, (viewer, r.text)
    doc = r.json()
    comp = check_document(doc, "leakpat-1")
    text = r.text
    hidden_ids = {h.split("/", 1)[1] for h in hidden}
    assert not set(ID_RE.findall(text)) & hidden_ids, (viewer, set(ID_RE.findall(text)) & hidden_ids)
    for ref, marker in MARKERS.items():
        if ref in hidden:
            assert marker not in text, (viewer, ref, marker)
    carried = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in doc["entry"]
               if not e["fullUrl"].startswith("urn:")}
    assert carried <= allowed, (viewer, carried - allowed)
    refs = section_refs(comp)
    visible_obs = [o for o in OBS_DATES if o in allowed]
    newest = max(visible_obs, key=OBS_DATES.__getitem__) if visible_obs else None
    assert refs.get("30954-2", []) == ([newest] if newest else []), (viewer, refs)
    assert ("Condition/leakcond-1" in refs["11450-4"]) == ("Condition/leakcond-1" in allowed), viewer


def test_summary_shows_nothing_hidden_in_any_consent_state(node: Any) -> None:
    """One region, the consent states applied in turn (the same Consent id rewritten, so each
    state also follows a change of consent), each viewer probed with a real token."""
    put_all(node, region())
    toks = tokens(node)  # users with passwords: hashed once per database
    assert STATES[0] == "none"
    with TestClient(node.create_app(), base_url="http://testserver") as client:
        for state in STATES:
            if consent_state(state):
                put_all(node, consent_state(state))
            everything = ({f"{r['resourceType']}/{r['id']}" for r in region()}
                          | {f"Consent/{c['id']}" for c in consent_state(state)})
            for viewer in VIEWERS:
                allowed = allowed_ids(node, viewer)
                _check_viewer(client, toks[viewer], allowed, everything - allowed, f"{state}/{viewer}")


def test_the_states_differ_for_the_summary(node: Any) -> None:
    """Not vacuous: some viewer is refused the patient, some sees a partial record."""
    put_all(node, region())
    put_all(node, consent_state("a-only"))
    a, b = allowed_ids(node, "facility-a"), allowed_ids(node, "facility-b")
    assert "Patient/leakpat-1" in a and "Patient/leakpat-1" not in b
    assert "Observation/leakobs-2" not in a and "Observation/leakobs-1" in a
