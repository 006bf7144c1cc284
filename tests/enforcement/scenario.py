"""A small region for enforcement tests: three facilities, two patients, resources of every
kind of interest (classes, sensitive labels, dates, UNINFORMED), and consent states."""

from __future__ import annotations

from typing import Any

from consent import builder
from hie.auth.registry import NETWORK_ROLE_EXT
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM

ORGS = {"org-a": "1110000011", "org-b": "1110000029", "org-c": "1110000052"}
# network_region(): a viewing-only, a disclosing-only and an inactive facility, and a code
# nobody registered (all outside region(), whose facilities have the default role "both")
ROLE_ORGS = {"org-v": "1110000037", "org-d": "1110000045", "org-x": "1110000078"}
NETWORK_ROLES = {"org-v": "viewing", "org-d": "disclosing"}
UNREGISTERED = "1119999990"
CODE_TO_ORG = {v: k for k, v in {**ORGS, **ROLE_ORGS}.items()}
A, B, C = ORGS["org-a"], ORGS["org-b"], ORGS["org-c"]
V, D, X = ROLE_ORGS["org-v"], ROLE_ORGS["org-d"], ROLE_ORGS["org-x"]


def org(oid: str) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Organization", "id": oid, "name": oid,
                           "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": {**ORGS, **ROLE_ORGS}[oid]}]}
    if oid in NETWORK_ROLES:
        res["extension"] = [{"url": NETWORK_ROLE_EXT, "valueCode": NETWORK_ROLES[oid]}]
    if oid == "org-x":
        res["active"] = False
    return res


def tagged(res: dict[str, Any], custodian: str, *, labels: tuple[str, ...] = (),
           uninformed: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": custodian}]}
    if uninformed:
        meta["tag"].append({"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication",
                            "code": "UNINFORMED"})
    if labels:
        meta["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c} for c in labels]
    return {**res, "meta": meta}


def patient(pid: str, custodian: str) -> dict[str, Any]:
    return tagged({"resourceType": "Patient", "id": pid, "name": [{"family": "山田", "given": [pid]}]}, custodian)


def lab(oid: str, pid: str, custodian: str, when: str | None, **kw: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                                     "code": "laboratory"}]}],
                           "code": {"text": "HbA1c"}, "subject": {"reference": f"Patient/{pid}"},
                           "valueQuantity": {"value": 7.0, "unit": "%"}}
    if when:
        res["effectiveDateTime"] = when
    return tagged(res, custodian, **kw)


def condition(cid: str, pid: str, custodian: str, when: str, **kw: Any) -> dict[str, Any]:
    return tagged({"resourceType": "Condition", "id": cid, "code": {"text": "2型糖尿病"},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                  "code": "active"}]},
                   "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": when}, custodian, **kw)


def med(mid: str, pid: str, custodian: str, when: str, **kw: Any) -> dict[str, Any]:
    return tagged({"resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
                   "medicationCodeableConcept": {"text": "メトホルミン"}, "subject": {"reference": f"Patient/{pid}"},
                   "authoredOn": when}, custodian, **kw)


def doc(did: str, pid: str, custodian: str) -> dict[str, Any]:
    return tagged({"resourceType": "DocumentReference", "id": did, "status": "current",
                   "subject": {"reference": f"Patient/{pid}"},
                   "content": [{"attachment": {"contentType": "text/plain", "data": "6Kq/5p+7"}}]}, custodian)


def region() -> list[dict[str, Any]]:
    """Resources; custodians are facility codes. Patient p1's data is spread over A and B."""
    return [
        org("org-a"), org("org-b"), org("org-c"),
        patient("p1", A), patient("p2", B),
        lab("lab-a-2024", "p1", A, "2024-05-01T09:00:00+09:00"),
        lab("lab-a-2026", "p1", A, "2026-10-01T09:00:00+09:00"),
        lab("lab-b-2026", "p1", B, "2026-11-01T09:00:00+09:00"),
        lab("lab-a-undated", "p1", A, None),
        lab("lab-a-hiv", "p1", A, "2026-09-01T09:00:00+09:00", labels=("HIV",)),
        lab("lab-a-hiv-psy", "p1", A, "2026-09-02T09:00:00+09:00", labels=("HIV", "PSY")),
        condition("cond-a", "p1", A, "2020-01-01"),
        condition("cond-a-uninformed", "p1", A, "2026-10-10", uninformed=True),
        condition("cond-a-psy", "p1", A, "2025-01-01", labels=("PSY",)),
        med("med-a", "p1", A, "2026-11-01"),
        doc("doc-a", "p1", A),
        lab("lab-p2-b", "p2", B, "2026-10-01T09:00:00+09:00"),
    ]


def network_region() -> list[dict[str, Any]]:
    """Facilities with network roles (see ROLE_ORGS) and p1 records in their custody (as a feed
    or an older node may have stored them)."""
    return [
        org("org-v"), org("org-d"), org("org-x"),
        lab("lab-d-2026", "p1", D, "2026-10-02T09:00:00+09:00"),
        lab("lab-v-2026", "p1", V, "2026-10-03T09:00:00+09:00"),
        lab("lab-x-2026", "p1", X, "2026-10-04T09:00:00+09:00"),
        lab("lab-u-2026", "p1", UNREGISTERED, "2026-10-05T09:00:00+09:00"),
    ]


def store_network_region(node: Any) -> None:
    """Store :func:`network_region` as an older node or a feed did, before the roles changed:
    the write guard refuses clinical data in the custody of a facility that may not disclose,
    so its records are stored while V, D, X and U are active facilities with the role
    ``both``; then V, D and X take their roles and U's Organization is deleted (nobody
    registered it any more)."""
    from hie.principal import SYSTEM
    from hie.storage.repository import Write

    both = [{**org(o), "active": True, "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": "both"}]}
            for o in ROLE_ORGS]
    u_org = {"resourceType": "Organization", "id": "org-u", "name": "org-u",
             "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": UNREGISTERED}]}
    records = [r for r in network_region() if r["resourceType"] != "Organization"]
    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([Write("update", r["resourceType"], r["id"], r) for r in [*both, u_org, *records]])
    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([*(Write("update", "Organization", o, org(o)) for o in ROLE_ORGS),
                              Write("delete", "Organization", "org-u")])


def recorded_at_a(consent: dict[str, Any]) -> dict[str, Any]:
    """The Consent as facility A's counter records it (custodian A)."""
    return {**consent, "meta": {**consent.get("meta", {}), "tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": A}]}}


def consents() -> dict[str, list[dict[str, Any]]]:
    """Consent states for patient p1 (the id of each Consent is fixed, so states replace)."""
    return {name: [recorded_at_a(c) for c in cs] for name, cs in _consents().items()}


def _consents() -> dict[str, list[dict[str, Any]]]:
    P = "Patient/p1"
    kw = {"recorded_by": "Organization/org-a", "date_time": "2026-01-10T10:00:00+09:00"}
    return {
        "all-facilities": [builder.all_facilities("c1", P, **kw)],
        "viewing-only-facility-named": [builder.chosen_facilities("c1", P, ["Organization/org-v"], **kw)],
        "none": [],
        "facility-b-only": [builder.chosen_facilities("c1", P, ["Organization/org-b"], **kw)],
        "all-except-b": [builder.all_facilities("c1", P, exclude=["Organization/org-b"], **kw)],
        "labs-excluded": [builder.consent("c1", P, builder.provision("permit", provisions=[
            builder.provision("deny", classes=["lab"])]), **kw)],
        "expired": [builder.chosen_facilities("c1", P, ["Organization/org-b", "Organization/org-c"], provision_kw={
            "in_force": builder.period("2025-01-01", "2025-12-31")}, **kw)],
        "revoked": [builder.chosen_facilities("c1", P, ["Organization/org-b", "Organization/org-c"],
                                              status="inactive", **kw)],
        "sensitive-denied": [builder.consent("c1", P, builder.provision("permit", provisions=[
            builder.provision("deny", labels=["PSY"])]), **kw)],
        "hiv-permitted-for-c": [
            builder.chosen_facilities("c1", P, ["Organization/org-c"], **kw),
            builder.consent("c2", P, builder.provision("permit", actors=["Organization/org-c"], labels=["HIV"]), **kw),
        ],
        "data-period-2026": [builder.all_facilities("c1", P, provision_kw={
            "data_period": builder.period("2026-01-01", "2026-12-31")}, **kw)],
        "per-individual": [builder.per_individual("c1", P, ["Practitioner/dr-c"], **kw)],
        # A label permit narrowed by class or by data period must be matched against the
        # labelled row itself, not against some other row of the same patient.
        "psy-permitted-for-labs-only": [
            builder.chosen_facilities("c1", P, ["Organization/org-c"], **kw),
            builder.consent("c2", P, builder.provision("permit", actors=["Organization/org-c"], labels=["PSY", "HIV"],
                                                       classes=["lab"]), **kw),
        ],
        "psy-permitted-for-2026-data": [
            builder.chosen_facilities("c1", P, ["Organization/org-c"], **kw),
            builder.consent("c2", P, builder.provision("permit", actors=["Organization/org-c"], labels=["PSY"],
                                                       data_period=builder.period("2026-01-01", "2026-12-31")), **kw),
        ],
    }
