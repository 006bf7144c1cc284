"""Every R4 resource type is classified and patient-resolved (issue 10, "Patient data classed
administrative").

The walk over all types prints each type's data class and how its patient is found; no type
that can hold patient data may come out administrative. The vendored Patient compartment
(consent/compartment.py) is derived again from the official files in hie/definitions.
Then, on SQLite and PostgreSQL: a Binary takes its securityContext's patient, class and
labels (stored, in the same transaction, or hidden from the writer), a Group of several
patients has no single patient and is not administrative.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from consent.classes import ADMINISTRATIVE, ADMINISTRATIVE_TYPES, classify
from consent.compartment import PATIENT_COMPARTMENT, ROLE_PARAMS, about_paths
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM
from hie.fhir.types import R4_RESOURCE_TYPES
from hie.ingest import ingest_bundle
from tests.facility_fixtures import facility
from hie.principal import SYSTEM, Principal
from hie.search.registry import DEFINITIONS
from hie.storage.rowmeta import CONTAINERS, EXPLICIT, patient_of, patient_refs, row_meta
from hie.storage.tables import resource
from hie.storage.tables import resource_version as V_TABLE

#: Types whose class depends on what they hold (administrative only when nothing is a patient's).
BY_CONTENT = {"Bundle", "Parameters", "Group", "Device"}


def _nest(path: str, value: Any) -> dict[str, Any]:
    """``{"a": [{"b": value}]}`` for ``a.b`` (lists at every level: the walker reads both)."""
    head, _, rest = path.partition(".")
    return {head: [_nest(rest, value)] if rest else value}


def sample(rtype: str) -> tuple[dict[str, Any], str]:
    """A resource of ``rtype`` about Patient/p1 (directly or through DocumentReference/d1) and
    the rule that finds the patient."""
    pat = {"reference": "Patient/p1"}
    if rtype == "Patient":
        return {"resourceType": "Patient", "id": "p1"}, "itself"
    if rtype == "Bundle":
        return {"resourceType": "Bundle", "type": "document", "entry": [
            {"fullUrl": "urn:uuid:c",
             "resource": {"resourceType": "Composition", "subject": {"reference": "urn:uuid:p"}}},
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p1"}}],
        }, "document: Composition.subject"
    if rtype == "Parameters":
        return {"resourceType": "Parameters", "parameter": [{"name": "x", "resource": {
            "resourceType": "Observation", "subject": pat}}]}, "what it carries"
    if rtype in PATIENT_COMPARTMENT:
        first = about_paths(rtype)[0][0]
        res = {"resourceType": rtype, **_nest(first, pat)}
        if rtype == "Group":
            res["type"] = "person"
        return res, f"compartment: {first}"
    direct, via = EXPLICIT[rtype]
    if direct:
        return {"resourceType": rtype, **_nest(direct[0], pat)}, f"explicit: {direct[0]}"
    return {"resourceType": rtype, **_nest(via[0], {"reference": "DocumentReference/d1"})}, f"via: {via[0]}"


def test_vendored_compartment_is_the_official_one():
    comp = json.loads((DEFINITIONS / "compartmentdefinition-patient.json").read_text(encoding="utf-8"))
    params = json.loads((DEFINITIONS / "search-parameters.json").read_text(encoding="utf-8"))
    assert comp["url"] == "http://hl7.org/fhir/CompartmentDefinition/patient" and comp["version"] == "4.0.1"
    by_key = {(b, e["resource"]["code"]): e["resource"] for e in params["entry"] for b in e["resource"].get("base", [])}
    derived = {}
    for r in comp["resource"]:
        if not r.get("param"):
            continue
        t = r["code"]
        derived[t] = {}
        for code in r["param"]:
            parts = [x.strip() for x in by_key[(t, code)]["expression"].split("|")]
            derived[t][code] = tuple(re.sub(r"\.where\(resolve\(\) is Patient\)$", "", x[len(t) + 1:])
                                     for x in parts if x.startswith(t + "."))
    assert derived == PATIENT_COMPARTMENT
    assert ROLE_PARAMS <= {c for params in derived.values() for c in params}


def test_every_r4_type_is_classified_and_patient_resolved(capsys):
    groups = {"administrative": ADMINISTRATIVE_TYPES, "compartment": set(PATIENT_COMPARTMENT),
              "explicit": set(EXPLICIT), "containers": CONTAINERS}
    rows = []
    for rtype in sorted(R4_RESOURCE_TYPES):
        member = [name for name, types in groups.items() if rtype in types]
        assert len(member) == 1, (rtype, member)  # every type has exactly one rule
        if rtype in ADMINISTRATIVE_TYPES:
            bare = {"resourceType": rtype, "id": "x"}
            assert classify(bare) == ADMINISTRATIVE and patient_refs(bare) == ((), ()), rtype
            rows.append((rtype, ADMINISTRATIVE, "not about a patient"))
            continue
        res, how = sample(rtype)
        meta = row_meta(res, "1110000011")
        assert meta.data_class != ADMINISTRATIVE, rtype
        assert (meta.patient_ids, meta.patient_via) in ((("p1",), ()), ((), ("DocumentReference/d1",))), (rtype, meta)
        bare_class = classify({"resourceType": rtype})
        if rtype not in BY_CONTENT:  # patient data whatever it holds
            assert bare_class != ADMINISTRATIVE, rtype
        rows.append((rtype, meta.data_class, how))
    with capsys.disabled():
        print(f"\n{'type':34} {'class':15} patient found by")
        for rtype, cls, how in rows:
            print(f"{rtype:34} {cls:15} {how}")
    assert len(rows) == len(R4_RESOURCE_TYPES) == 147  # hie.fhir.types: every type the node knows


@pytest.mark.parametrize(("res", "expect"), [
    ({"resourceType": "Observation", "subject": {"reference": "Patient/a"}, "performer": [{"reference": "Patient/b"}]},
     (("a",), ())),
    ({"resourceType": "QuestionnaireResponse", "author": {"reference": "Patient/b"}}, (("b",), ())),
    ({"resourceType": "Coverage", "subscriber": {"reference": "Patient/s"}, "beneficiary": {"reference": "Patient/c"}},
     (("c",), ())),
    ({"resourceType": "Group", "type": "person", "member": [{"entity": {"reference": "Patient/a"}},
                                                            {"entity": {"reference": "Patient/b"}}]}, (("a", "b"), ())),
    ({"resourceType": "List", "subject": {"reference": "Patient/a"}, "source": {"reference": "Practitioner/x"}},
     (("a",), ())),
    ({"resourceType": "Binary", "securityContext": {"reference": "DocumentReference/d/_history/2"}},
     ((), ("DocumentReference/d",))),
    ({"resourceType": "Task", "focus": {"reference": "ServiceRequest/s"}}, ((), ("ServiceRequest/s",))),
    ({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/a"}}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": "http://x/fhir/Patient/b"}}}]},
     (("a", "b"), ())),
    ({"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Composition", "subject": {"reference": "Patient/a"}}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/a"}}}]}, (("a",), ())),
    ({"resourceType": "Patient", "id": "a", "link": [{"other": {"reference": "Patient/b"}}]}, (("a",), ())),
])
def test_patient_rules(res, expect):
    assert patient_refs(res) == expect


def test_content_dependent_types():
    assert classify({"resourceType": "Group", "type": "practitioner",
                     "member": [{"entity": {"reference": "Practitioner/x"}}]}) == ADMINISTRATIVE
    assert classify({"resourceType": "Group", "type": "person", "actual": False}) != ADMINISTRATIVE
    assert classify({"resourceType": "Device"}) == ADMINISTRATIVE
    assert classify({"resourceType": "Device", "patient": {"reference": "Patient/a"}}) != ADMINISTRATIVE
    assert classify({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization"}}]}) == ADMINISTRATIVE
    assert classify({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation"}}]}) != ADMINISTRATIVE
    assert classify({"resourceType": "Bundle", "type": "document"}) != ADMINISTRATIVE
    # a Bundle carries the labels (and UNINFORMED) of what it holds
    meta = row_meta({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "subject": {"reference": "Patient/a"},
        "meta": {"security": [{"code": "PSY"}], "tag": [{"code": "UNINFORMED"}]}}}]}, None)
    assert meta.sensitive_labels == " PSY " and meta.hidden_from_patient and meta.patient_ref == "a"
    assert patient_of({"resourceType": "Group", "member": [{"entity": {"reference": "Patient/a"}},
                                                           {"entity": {"reference": "Patient/b"}}]}) is None


# -- stored rows (both databases) ----------------------------------------------------------------

D, V = "1110000011", "1110000029"


def _tag(custodian: str, *labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": custodian}]}
    if labels:
        meta["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c} for c in labels]
    return meta


def _put(node: Any, resources: list[dict[str, Any]]) -> None:
    resources = [facility(D), *resources]  # the custodian D is a registered, disclosing facility
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="classification-test")


def _row(node: Any, rtype: str, rid: str) -> dict[str, Any]:
    cols = ("patient_key", "custodian", "data_class", "sensitive_labels")
    with node.engine.connect() as conn:
        row = conn.execute(select(*(resource.c[c] for c in cols)).where(
            resource.c.res_type == rtype, resource.c.res_id == rid)).one()
    return dict(zip(cols, row, strict=True))


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "meta": _tag(D), "name": [{"family": pid}]}


def _docref(did: str, pid: str, *labels: str) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": did, "meta": _tag(D, *labels), "status": "current",
            "subject": {"reference": f"Patient/{pid}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "6Kq/5p+7"}}]}


def _binary(bid: str, target: str) -> dict[str, Any]:
    return {"resourceType": "Binary", "id": bid, "meta": _tag(D), "contentType": "application/pdf",
            "securityContext": {"reference": target}, "data": "JVBERi0="}


def test_binary_takes_its_security_context(node):
    _put(node, [_patient("cls-p1"), _docref("cls-doc-psy", "cls-p1", "PSY")])
    p1_key = _row(node, "Patient", "cls-p1")["patient_key"]
    _put(node, [_binary("cls-bin-1", "DocumentReference/cls-doc-psy")])  # target already stored
    assert _row(node, "Binary", "cls-bin-1") == {"patient_key": p1_key, "custodian": D, "data_class": "document",
                                                  "sensitive_labels": " PSY "}
    # target written in the same transaction, after the Binary in entry order
    _put(node, [_binary("cls-bin-2", "DocumentReference/cls-doc-2"), _docref("cls-doc-2", "cls-p1")])
    assert _row(node, "Binary", "cls-bin-2")["patient_key"] == p1_key
    # a target about no patient: patient data of no single patient (custodian only), never administrative
    _put(node, [{"resourceType": "Organization", "id": "cls-org", "name": "x"},
                _binary("cls-bin-3", "Organization/cls-org")])
    assert _row(node, "Binary", "cls-bin-3") == {"patient_key": None, "custodian": D, "data_class": "document",
                                                  "sensitive_labels": " "}


def test_binary_written_by_a_facility_that_cannot_see_the_target_learns_no_patient(node):
    _put(node, [_patient("cls-p1"), _docref("cls-doc-1", "cls-p1")])
    with node.context(SYSTEM, write=True) as ctx:  # sanity: the system resolves it
        ctx.repo.create(_binary("cls-bin-sys", "DocumentReference/cls-doc-1"), res_id="cls-bin-sys")
    assert _row(node, "Binary", "cls-bin-sys")["patient_key"] is not None
    with node.context(Principal(kind="client", name="v", client_id="v", organization_id=V), write=False) as ctx:
        assert ctx.repo.current("DocumentReference", "cls-doc-1") is None  # hidden from V
        meta, key = ctx.repo._resolve_patient(row_meta(_binary("x", "DocumentReference/cls-doc-1"), V))
    assert key is None and meta.data_class == "document" and meta.sensitive_labels == " "


def test_group_of_several_patients_has_no_single_patient(node):
    _put(node, [_patient("cls-p1"), _patient("cls-p2"),
                {"resourceType": "Group", "id": "cls-g1", "meta": _tag(D), "type": "person", "actual": True,
                 "member": [{"entity": {"reference": "Patient/cls-p1"}}]},
                {"resourceType": "Group", "id": "cls-g2", "meta": _tag(D), "type": "person", "actual": True,
                 "member": [{"entity": {"reference": "Patient/cls-p1"}}, {"entity": {"reference": "Patient/cls-p2"}}]}])
    assert _row(node, "Group", "cls-g1")["patient_key"] == _row(node, "Patient", "cls-p1")["patient_key"]
    assert _row(node, "Group", "cls-g2") == {"patient_key": None, "custodian": D, "data_class": "clinical",
                                              "sensitive_labels": " "}


def test_reindex_recomputes_rows_written_under_the_old_rules(node):
    """Rows stored before the rules changed (a Group classed administrative, without a patient)
    are recomputed, versions included, keeping their custodian; a second pass changes nothing."""
    group = {"resourceType": "Group", "id": "cls-g1", "meta": _tag(D), "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/cls-p1"}}]}
    _put(node, [_patient("cls-p1"), group])
    _put(node, [{**group, "name": "v2"}])
    want = _row(node, "Group", "cls-g1")
    with node.engine.begin() as conn:  # what the old rules stored
        for t in (resource, V_TABLE):
            conn.execute(t.update().where(t.c.res_type == "Group").values(
                data_class=ADMINISTRATIVE, patient_key=None, custodian="1110000099" if t is V_TABLE else D))
    assert _row(node, "Group", "cls-g1")["data_class"] == ADMINISTRATIVE

    def run() -> int:
        last: int | None = 0
        total = 0
        while last is not None:
            with node.context(SYSTEM, write=True) as ctx:
                last, n = ctx.repo.recompute_enforcement(after_pk=last, limit=2)
            total += n
        return total

    assert run() == 3  # the current row and both versions
    assert _row(node, "Group", "cls-g1") == want
    with node.engine.connect() as conn:
        got = conn.execute(select(V_TABLE.c.data_class, V_TABLE.c.patient_key, V_TABLE.c.custodian).where(
            V_TABLE.c.res_type == "Group")).all()
    assert got == [("clinical", want["patient_key"], "1110000099")] * 2  # the custodian is never rewritten
    assert run() == 0
    with node.context(Principal(kind="user", name="v", user_id="v", organization_id=V), write=False) as ctx:
        with pytest.raises(PermissionError):
            ctx.repo.recompute_enforcement()
