"""A facility's own Patient record must not tell whether a hidden look-alike exists (W2-5).

Clinic B registers (or updates into) a Patient with the demographics of the hospital's
patient q, whom B may not see, and compares everything it can read about its own record
with a Patient whose demographics match nobody: the write's answer, read, vread, _history,
search by identifier, the ``refer`` link's target, ``$match`` and ``$ihe-pix``. Auto-link
happens in the first case only; the answers must not differ beyond the ids (own record id,
person key), which are random either way. Region: tests/enforcement/test_write_authz.py
(hospital H, clinic B; q consented to nobody). Runs on SQLite and PostgreSQL (``node``).
"""

from __future__ import annotations

from typing import Any

from tests.enforcement.test_write_authz import B, Caller, who, world  # noqa: F401  (fixture)
from tests.identity.identity_fixtures import FACILITY, other_person, patient

BASE = "http://testserver/fhir/"


def _look_alike_of_q(number: str) -> dict[str, Any]:
    res = other_person("x", B, number)  # q's demographics, B's patient number
    res.pop("id")
    return res


def _nobody(number: str) -> dict[str, Any]:
    res = patient("x", B, number, family="無関係", family_kana="ムカンケイ", given="一郎", given_kana="イチロウ",
                  birth="1999-09-09", address="沖縄県那覇市1-1", postal="900-0001", phone="098-000-0000")
    res.pop("id")
    return res


def _somebody_else(number: str) -> dict[str, Any]:
    res = patient("x", B, number, family="別人", family_kana="ベツジン", given="次郎", given_kana="ジロウ",
                  birth="1988-08-08", address="北海道札幌市2-2", postal="060-0002", phone="011-000-0000")
    res.pop("id")
    return res


def _shape(res: dict[str, Any], own: str) -> dict[str, Any]:
    """What B sees of a Patient, ids replaced by their role (they are random either way)."""
    links = res.get("link") or []
    return {"id": "own" if res.get("id") == own else res.get("id"), "versionId": res["meta"]["versionId"],
            "link": [(ln["type"], ln["other"]["reference"].split("/")[0]) for ln in links],
            "keys": sorted(res)}


def _outcome(r: Any) -> tuple[int, str | None]:
    body = r.json()
    coding = ((body.get("issue") or [{}])[0].get("details") or {}).get("coding") or [{}]
    return r.status_code, coding[0].get("code") if body.get("resourceType") == "OperationOutcome" else None


def _view(b: Caller, own: str, number: str, resource: dict[str, Any]) -> dict[str, Any]:
    """Everything B can read about its own record ``own`` (patient number ``number``)."""
    read = b.send("GET", f"/fhir/Patient/{own}").json()
    target = read["link"][0]["other"]["reference"]
    hist = b.send("GET", f"/fhir/Patient/{own}/_history").json()
    found = b.send("GET", f"/fhir/Patient?identifier={FACILITY}{B}|{number}").json()
    linked = b.send("GET", f"/fhir/Patient?link={target}").json()
    match = b.send("POST", "/fhir/Patient/$match", {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": resource}]}).json()
    pix = b.send("GET", f"/fhir/Patient/$ihe-pix?sourceIdentifier={FACILITY}{B}|{number}")
    return {
        "read": _shape(read, own),
        "vread 1": _shape(b.send("GET", f"/fhir/Patient/{own}/_history/1").json(), own),
        "vread 2": _outcome(b.send("GET", f"/fhir/Patient/{own}/_history/2")),
        "history": [_shape(e["resource"], own) for e in hist["entry"]],
        "search": (found["total"], [_shape(e["resource"], own) for e in found["entry"]]),
        "target": _outcome(b.send("GET", f"/fhir/{target}")),
        "target history": _outcome(b.send("GET", f"/fhir/{target}/_history")),
        "linked": (linked["total"], [_shape(e["resource"], own) for e in linked.get("entry", ())]),
        "match": [(_shape(e["resource"], own), e["search"]) for e in match.get("entry", ())],
        "pix": (pix.status_code, sorted(p["name"] for p in pix.json().get("parameter", ()))),
    }


def _created(b: Caller, resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    r = b.send("POST", "/fhir/Patient", resource)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"status": r.status_code, "etag": r.headers.get("etag"),
                            "body": _shape(r.json(), r.json()["id"])}


def test_registering_a_look_alike_of_a_hidden_patient_reads_like_registering_nobody(world):
    b = who(world, "other facility")
    assert b.send("GET", "/fhir/Patient/q").status_code == 404  # q is hidden from B
    own_h, answer_h = _created(b, _look_alike_of_q("b-1"))
    own_n, answer_n = _created(b, _nobody("b-2"))
    assert answer_h == answer_n
    assert answer_h["etag"] == 'W/"1"' and answer_h["body"]["link"] == [("refer", "Patient")]
    hidden = _view(b, own_h, "b-1", _look_alike_of_q("b-9"))
    nobody = _view(b, own_n, "b-2", _nobody("b-9"))
    assert hidden == nobody
    assert hidden["read"]["versionId"] == "1" and hidden["target"][0] == 404
    assert hidden["linked"][0] == 1 and len(hidden["match"]) == 1  # link search and $match work


def test_updating_into_a_look_alike_reads_like_any_update(world):
    """The W2-1 path: B's record matched nobody, then B's update makes it a look-alike of q
    (auto-link) -- or an unrelated change (no match). Both are one version more."""
    b = who(world, "other facility")
    own_h, _ = _created(b, _nobody("b-3"))
    own_n, _ = _created(b, _somebody_else("b-4"))
    r_h = b.send("PUT", f"/fhir/Patient/{own_h}", {**_look_alike_of_q("b-3"), "id": own_h})
    r_n = b.send("PUT", f"/fhir/Patient/{own_n}", {**_somebody_else("b-4"), "id": own_n, "gender": "female"})
    assert (r_h.status_code, r_h.headers.get("etag"), _shape(r_h.json(), own_h)) == \
           (r_n.status_code, r_n.headers.get("etag"), _shape(r_n.json(), own_n))
    hidden = _view(b, own_h, "b-3", _look_alike_of_q("b-9"))
    nobody = _view(b, own_n, "b-4", {**_somebody_else("b-9"), "gender": "female"})
    assert hidden == nobody
    assert hidden["read"]["versionId"] == "2" and len(hidden["history"]) == 2


def test_a_resend_without_the_link_keeps_one_version_and_the_link(world):
    """A facility that replaces its record without the ``refer`` link gets it back in the
    version it wrote (no second version by identity)."""
    b = who(world, "other facility")
    own, _ = _created(b, _nobody("b-5"))
    link = b.send("GET", f"/fhir/Patient/{own}").json()["link"]
    r = b.send("PUT", f"/fhir/Patient/{own}", {**_nobody("b-5"), "id": own, "gender": "female"})
    assert r.status_code == 200 and r.headers.get("etag") == 'W/"2"', r.text
    read = b.send("GET", f"/fhir/Patient/{own}").json()
    assert read["meta"]["versionId"] == "2" and read["link"] == link and read["gender"] == "female"
    assert b.send("GET", f"/fhir/Patient/{own}/_history/2").json()["link"] == link
    assert b.send("GET", f"/fhir/Patient/{own}/_history/3").status_code == 404


def test_an_identical_resend_without_the_link_is_a_no_op(world):
    """A feed re-sending the record it sent before (without the ``refer`` link identity
    added) changes nothing: no new version, the link stays."""
    b = who(world, "other facility")
    own, _ = _created(b, _nobody("b-6"))
    before = b.send("GET", f"/fhir/Patient/{own}").json()
    r = b.send("PUT", f"/fhir/Patient/{own}", {**_nobody("b-6"), "id": own})
    assert r.status_code == 200 and r.headers.get("etag") == 'W/"1"', r.text
    assert b.send("GET", f"/fhir/Patient/{own}").json() == before
    hist = b.send("GET", f"/fhir/Patient/{own}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["1"]
    assert b.send("GET", f"/fhir/Patient?link={before['link'][0]['other']['reference']}").json()["total"] == 1
