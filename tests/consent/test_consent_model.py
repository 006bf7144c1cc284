"""Parsing the node's Consent profile: accepted shapes and errors that name the element path."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from consent import builder as b
from consent.model import NODE_TZ, ConsentError, parse_consent, parse_datetime
from consent.vocab import DATA_CLASS_SYSTEM, intersect_purposes, purpose_closure


def full_consent() -> dict:
    return b.consent(
        "c1", "Patient/p1",
        b.provision("permit", in_force=b.period("2024-04-01", "2026-03-31"), provisions=[
            b.provision("deny", actors=["Organization/B"]),
            b.provision("permit", actors=["Organization/A", "Practitioner/dr1"], labels=["PSY"],
                        purposes=["TREAT"], classes=["problem", "document"],
                        data_period=b.period("2020"), in_force=b.period("2024-05")),
        ]),
        date_time="2024-04-01T10:00:00+09:00", recorded_by="Organization/H",
        scanned_form_url="https://hie.example.jp/forms/c1.pdf", policy_uri="https://hie.example.jp/policy/v1",
    )


def test_parses_every_element_of_the_profile():
    c = parse_consent(full_consent(), patient_key="PK-1")
    assert (c.id, c.patient, c.patient_reference, c.status) == ("c1", "PK-1", "Patient/p1", "active")
    assert c.categories == ("http://loinc.org|59284-0",)
    assert c.date_time == datetime(2024, 4, 1, 1, 0, tzinfo=timezone.utc)
    assert c.performers == ("Organization/H",) and c.organizations == ("Organization/H",)
    assert c.source is not None and c.source.url == "https://hie.example.jp/forms/c1.pdf"
    assert c.source.content_type == "application/pdf" and not c.source.has_inline_data
    assert c.policy_uris == ("https://hie.example.jp/policy/v1",)
    root = c.provision
    assert root.type == "permit" and root.actors == ()
    assert root.period.start == datetime(2024, 4, 1, tzinfo=NODE_TZ)
    assert root.period.end == datetime(2026, 4, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)
    deny, permit = root.provisions
    assert deny.path == "Consent.provision.provision[0]" and deny.type == "deny"
    assert [(a.kind, a.id) for a in deny.actors] == [("Organization", "B")]
    assert permit.path == "Consent.provision.provision[1]"
    assert [(a.kind, a.id, a.path) for a in permit.actors] == [
        ("Organization", "A", "Consent.provision.provision[1].actor[0]"),
        ("Practitioner", "dr1", "Consent.provision.provision[1].actor[1]"),
    ]
    assert permit.security_labels == {"PSY"} and permit.purposes == {"TREAT"}
    assert permit.classes == {"problem", "document"}
    assert permit.data_period.start == datetime(2020, 1, 1, tzinfo=NODE_TZ)
    assert permit.data_period.end is None
    assert [chain[-1].path for chain in root.walk()] == [
        "Consent.provision", "Consent.provision.provision[0]", "Consent.provision.provision[1]"]


def test_patient_key_defaults_to_the_reference():
    assert parse_consent(full_consent()).patient == "Patient/p1"


def test_data_class_may_come_from_provision_code():
    res = b.consent("c", "Patient/p", b.provision("permit", classes=["imaging"]))
    res["provision"]["code"] = [{"coding": [{"system": DATA_CLASS_SYSTEM, "code": "lab"}]}]
    assert parse_consent(res).provision.classes == {"lab", "imaging"}


@pytest.mark.parametrize("status", ["draft", "proposed", "active", "rejected", "inactive", "entered-in-error"])
def test_every_r4_status_parses_and_only_active_is_active(status):
    res = full_consent()
    res["status"] = status
    assert parse_consent(res).is_active is (status == "active")


def _set(path, value):
    def edit(res):
        target = res
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return edit


_DELETE = object()
P = ["provision"]
N1 = ["provision", "provision", 1]

ERRORS = [
    ("wrong-resource-type", _set(["resourceType"], "Patient"), "Consent.resourceType"),
    ("unknown-status", _set(["status"], "withdrawn"), "Consent.status"),
    ("missing-status", _set(["status"], _DELETE), "Consent.status"),
    ("research-scope", _set(["scope"], {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]}), "Consent.scope"),
    ("missing-scope", _set(["scope"], _DELETE), "Consent.scope"),
    ("no-category", _set(["category"], []), "Consent.category"),
    ("category-coding-without-code", _set(["category"], [{"coding": [{"system": "http://loinc.org"}]}]), "Consent.category[0].coding[0].code"),
    ("missing-patient", _set(["patient"], _DELETE), "Consent.patient"),
    ("patient-not-a-patient", _set(["patient"], {"reference": "Group/g1"}), "Consent.patient"),
    ("bad-datetime", _set(["dateTime"], "2024-13-01"), "Consent.dateTime"),
    ("datetime-without-zone", _set(["dateTime"], "2024-04-01T10:00:00"), "Consent.dateTime"),
    ("performer-device", _set(["performer"], [{"reference": "Device/d1"}]), "Consent.performer[0]"),
    ("organization-is-practitioner", _set(["organization"], [{"reference": "Practitioner/x"}]), "Consent.organization[0]"),
    ("source-reference", _set(["sourceReference"], {"reference": "DocumentReference/d"}), "Consent.sourceReference"),
    ("attachment-without-content", _set(["sourceAttachment"], {"title": "form"}), "Consent.sourceAttachment"),
    ("attachment-negative-size", _set(["sourceAttachment", "size"], -1), "Consent.sourceAttachment.size"),
    ("policy-without-uri", _set(["policy"], [{}]), "Consent.policy[0]"),
    ("opt-out-rule", _set(["policyRule"], {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}), "Consent.policyRule"),
    ("missing-policy-rule", _set(["policyRule"], _DELETE), "Consent.policyRule"),
    ("missing-provision", _set(["provision"], _DELETE), "Consent.provision"),
    ("modifier-extension", _set(["modifierExtension"], [{"url": "http://x", "valueBoolean": True}]), "Consent.modifierExtension"),
    ("provision-type-missing", _set(P + ["type"], _DELETE), "Consent.provision.type"),
    ("provision-type-unknown", _set(P + ["type"], "allow"), "Consent.provision.type"),
    ("provision-data", _set(P + ["data"], [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]), "Consent.provision.data"),
    ("provision-period-reversed", _set(P + ["period"], {"start": "2025-01-01", "end": "2024-01-01"}), "Consent.provision.period"),
    ("nested-actor-patient", _set(N1 + ["actor", 0, "reference"], {"reference": "Patient/p2"}), "Consent.provision.provision[1].actor[0].reference"),
    ("nested-actor-identifier-only", _set(N1 + ["actor", 0, "reference"], {"identifier": {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID", "value": "1312345670"}}), "Consent.provision.provision[1].actor[0].reference"),
    ("nested-actor-missing-reference", _set(N1 + ["actor", 1, "reference"], _DELETE), "Consent.provision.provision[1].actor[1].reference"),
    ("nested-actor-wrong-role", _set(N1 + ["actor", 0, "role"], {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT"}]}), "Consent.provision.provision[1].actor[0].role"),
    ("nested-actor-missing-role", _set(N1 + ["actor", 0, "role"], _DELETE), "Consent.provision.provision[1].actor[0].role"),
    ("label-not-sensitive", _set(N1 + ["securityLabel"], [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]), "Consent.provision.provision[1].securityLabel[0]"),
    ("label-unknown-code", _set(N1 + ["securityLabel"], [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "XYZ"}]), "Consent.provision.provision[1].securityLabel[0]"),
    ("purpose-other-system", _set(N1 + ["purpose"], [{"system": "http://example.org/purpose", "code": "TREAT"}]), "Consent.provision.provision[1].purpose[0].system"),
    ("class-other-system", _set(N1 + ["class"], [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]), "Consent.provision.provision[1].class[0].system"),
    ("class-unknown-code", _set(N1 + ["class"], [{"system": DATA_CLASS_SYSTEM, "code": "genome"}]), "Consent.provision.provision[1].class[0].code"),
    ("code-without-coding", _set(N1 + ["code"], [{"text": "labs"}]), "Consent.provision.provision[1].code[0]"),
    ("action-correct", _set(N1 + ["action"], [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "correct"}]}]), "Consent.provision.provision[1].action[0].coding[0]"),
    ("data-period-bad-date", _set(N1 + ["dataPeriod"], {"start": "20200101"}), "Consent.provision.provision[1].dataPeriod.start"),
    ("deny-with-nested", _set(["provision", "provision", 0, "provision"], [{"type": "permit"}]), "Consent.provision.provision[0].provision"),
    ("nested-period-outside-parent", _set(N1 + ["period"], {"start": "2027-01-01"}), "Consent.provision.provision[1].period"),
    ("actor-list-not-array", _set(N1 + ["actor"], {"role": {}}), "Consent.provision.provision[1].actor"),
]


@pytest.mark.parametrize("edit,path", [pytest.param(e, p, id=i) for i, e, p in ERRORS])
def test_invalid_shapes_raise_an_error_naming_the_element(edit, path):
    res = copy.deepcopy(full_consent())
    edit(res)
    with pytest.raises(ConsentError) as err:
        parse_consent(res)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": ")


def _nested(parent_kw, child_kw):
    return b.consent("c", "Patient/p", b.provision("permit", **parent_kw, provisions=[b.provision("deny", **child_kw)]))


@pytest.mark.parametrize("parent,child,element", [
    pytest.param({"actors": ["Organization/A"]}, {"actors": ["Organization/B"]}, "actor", id="disjoint-actors"),
    pytest.param({"classes": ["lab"]}, {"classes": ["imaging"]}, "class", id="disjoint-classes"),
    pytest.param({"labels": ["PSY"]}, {"labels": ["HIV"]}, "securityLabel", id="disjoint-labels"),
    pytest.param({"purposes": ["ETREAT"]}, {"purposes": ["HRESCH"]}, "purpose", id="disjoint-purposes"),
    pytest.param({"data_period": b.period("2020", "2020")}, {"data_period": b.period("2022")}, "dataPeriod", id="disjoint-data-periods"),
])
def test_nested_provision_that_can_never_apply_is_refused(parent, child, element):
    with pytest.raises(ConsentError) as err:
        parse_consent(_nested(parent, child))
    assert err.value.path == f"Consent.provision.provision[0].{element}"


@pytest.mark.parametrize("parent,child", [
    pytest.param({"actors": ["Organization/A"]}, {"actors": ["Practitioner/x"]}, id="org-and-practitioner-overlap"),
    pytest.param({"purposes": ["TREAT"]}, {"purposes": ["ETREAT"]}, id="purpose-subsumed"),
    pytest.param({"classes": ["lab", "imaging"]}, {"classes": ["lab"]}, id="class-subset"),
])
def test_overlapping_nested_provisions_are_accepted(parent, child):
    parse_consent(_nested(parent, child))


@pytest.mark.parametrize("text,upper,expected", [
    ("2024", False, datetime(2024, 1, 1, tzinfo=NODE_TZ)),
    ("2024", True, datetime(2025, 1, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)),
    ("2024-02", True, datetime(2024, 3, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)),
    ("2024-12", True, datetime(2025, 1, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)),
    ("2024-02-29", True, datetime(2024, 3, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)),
    # an end written to the second covers that whole second (as a search value does)
    ("2024-02-29T12:30:00Z", True, datetime(2024, 2, 29, 12, 30, 0, 999999, tzinfo=timezone.utc)),
    ("2024-02-29T12:30:00.5-05:00", False, datetime(2024, 2, 29, 17, 30, 0, 500000, tzinfo=timezone.utc)),
])
def test_partial_dates_widen_to_their_whole_span(text, upper, expected):
    assert parse_datetime(text, "x", upper=upper) == expected


def test_invalid_calendar_date_is_an_error():
    with pytest.raises(ConsentError, match="not a valid date"):
        parse_datetime("2023-02-29", "Consent.dateTime")


@pytest.mark.parametrize("code,closure", [
    ("TREAT", {"TREAT"}),
    ("ETREAT", {"ETREAT", "TREAT"}),
    ("BTG", {"BTG", "ETREAT", "TREAT"}),
    ("DISASTER", {"DISASTER", "PUBHLTH"}),
    ("HRESCH", {"HRESCH"}),
    (None, set()),
])
def test_purpose_closure_follows_the_act_reason_hierarchy(code, closure):
    assert purpose_closure(code) == closure


def test_purpose_intersection_keeps_the_more_specific_code():
    assert intersect_purposes(frozenset({"TREAT"}), frozenset({"ETREAT", "HRESCH"})) == {"ETREAT"}
    assert intersect_purposes(frozenset({"HPAYMT"}), frozenset({"TREAT"})) == frozenset()
