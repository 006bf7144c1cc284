"""The published profile, CodeSystem and ValueSets: valid R4 resources, consistent with the code,
and the profile's invariants agree with the parser on good and bad consents."""

from __future__ import annotations

import copy
import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet
from fhirpathpy import evaluate

from consent import builder as b
from consent.classes import ALL_CLASSES
from consent.errors import ConsentError
from consent.model import parse_consent
from consent.published import NAMES, load
from consent.vocab import (
    ACT_CODE_SYSTEM,
    CONSENT_PROFILE,
    CONSENT_SCOPE_SYSTEM,
    DATA_CLASS_SYSTEM,
    DATA_CLASS_VALUE_SET,
    OPT_IN,
    PATIENT_PRIVACY,
    VIEWER_ROLES,
)

_load = load


SD = _load("StructureDefinition-hie-consent")
ELEMENTS = {e["path"]: e for e in SD["differential"]["element"]}


@pytest.mark.parametrize("name,model", [
    ("StructureDefinition-hie-consent", StructureDefinition),
    ("CodeSystem-data-class", CodeSystem),
    ("ValueSet-data-class", ValueSet),
    ("ValueSet-viewer-role", ValueSet),
])
def test_definition_is_a_valid_r4_resource(name, model):
    parsed = model.model_validate(_load(name))
    assert parsed.id == _load(name)["id"]


def test_every_published_file_is_listed():
    from consent.published import DEFINITIONS_DIR
    assert sorted(p.stem for p in DEFINITIONS_DIR.glob("*.json")) == sorted(NAMES)
    with pytest.raises(KeyError):
        load("StructureDefinition-other")


def test_profile_constrains_base_consent():
    assert SD["url"] == CONSENT_PROFILE
    assert (SD["type"], SD["kind"], SD["derivation"], SD["fhirVersion"]) == (
        "Consent", "resource", "constraint", "4.0.1")
    assert SD["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/Consent"
    assert all(e["id"] == e["path"] and (e["path"] == "Consent" or e["path"].startswith("Consent."))
               for e in ELEMENTS.values())


def test_profile_fixes_scope_and_opt_in():
    assert ELEMENTS["Consent.scope"]["patternCodeableConcept"]["coding"] == [
        {"system": CONSENT_SCOPE_SYSTEM, "code": PATIENT_PRIVACY}]
    assert ELEMENTS["Consent.policyRule"]["patternCodeableConcept"]["coding"] == [
        {"system": ACT_CODE_SYSTEM, "code": OPT_IN}]
    assert ELEMENTS["Consent.policyRule"]["min"] == 1 and ELEMENTS["Consent.provision"]["min"] == 1


def test_profile_restricts_actors_classes_and_data():
    targets = ELEMENTS["Consent.provision.actor.reference"]["type"][0]["targetProfile"]
    assert [t.rsplit("/", 1)[1] for t in targets] == ["Organization", "Practitioner"]
    for path in ("Consent.provision.class", "Consent.provision.code"):
        assert ELEMENTS[path]["binding"] == {"strength": "required", "valueSet": DATA_CLASS_VALUE_SET}
    assert ELEMENTS["Consent.provision.data"]["max"] == "0"
    assert ELEMENTS["Consent.source[x]"]["type"] == [{"code": "Attachment"}]


def test_code_system_lists_exactly_the_engine_classes():
    cs = _load("CodeSystem-data-class")
    assert cs["url"] == DATA_CLASS_SYSTEM and cs["valueSet"] == DATA_CLASS_VALUE_SET
    assert [c["code"] for c in cs["concept"]] == list(ALL_CLASSES) and cs["count"] == len(ALL_CLASSES)
    assert all(c["display"] and c["definition"] for c in cs["concept"])
    vs = _load("ValueSet-data-class")
    assert vs["url"] == DATA_CLASS_VALUE_SET and vs["compose"]["include"] == [{"system": DATA_CLASS_SYSTEM}]


def test_viewer_role_value_set_matches_the_parser():
    vs = _load("ValueSet-viewer-role")
    codes = {(inc["system"], c["code"]) for inc in vs["compose"]["include"] for c in inc["concept"]}
    assert codes == VIEWER_ROLES
    assert ELEMENTS["Consent.provision.actor.role"]["binding"]["valueSet"] == vs["url"]


INVARIANTS = {c["key"]: c["expression"] for c in ELEMENTS["Consent"]["constraint"]}

GOOD = {
    "all-facilities": b.all_facilities("a", "Patient/p", exclude=["Organization/B"]),
    "chosen": b.chosen_facilities("c", "Patient/p", ["Organization/A", "Organization/B"],
                                  provision_kw={"classes": ["lab"]}),
    "per-facility": b.per_facility("f", "Patient/p", "Organization/A"),
    "per-individual": b.per_individual("i", "Patient/p", ["Practitioner/dr1"]),
}


@pytest.mark.parametrize("name", GOOD)
def test_profile_invariants_hold_for_the_patterns(name):
    parse_consent(GOOD[name])
    for key, expression in INVARIANTS.items():
        assert evaluate(GOOD[name], expression) == [True], key


def _mutate(edit):
    res = copy.deepcopy(GOOD["all-facilities"])
    edit(res["provision"]["provision"][0])
    return res


BAD = [
    ("hie-con-1", lambda p: p.update(provision=[{"type": "permit"}])),
    ("hie-con-2", lambda p: p.update(actor=[b.actor("Patient/q")])),
    ("hie-con-3",
     lambda p: p.update({"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]})),
    ("hie-con-3", lambda p: p.update(code=[{"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}])),
    ("hie-con-4", lambda p: p.update(data=[{"meaning": "instance", "reference": {"reference": "Observation/o"}}])),
    ("hie-con-5", lambda p: p.pop("type")),
]


@pytest.mark.parametrize("key,edit", [pytest.param(k, e, id=f"{k}-{i}") for i, (k, e) in enumerate(BAD)])
def test_profile_invariant_and_parser_both_refuse(key, edit):
    res = _mutate(edit)
    assert evaluate(res, INVARIANTS[key]) == [False]
    with pytest.raises(ConsentError):
        parse_consent(res)


def _doc_examples() -> list:
    import re
    from pathlib import Path

    from consent.published import DEFINITIONS_DIR
    doc = (DEFINITIONS_DIR.parents[1] / "docs" / "consent-profile.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)\n```", doc, re.S)
    assert Path(DEFINITIONS_DIR).exists()
    return [pytest.param(block, id=f"doc-example-{i}") for i, block in enumerate(blocks)]


@pytest.mark.parametrize("block", _doc_examples())
def test_documented_examples_follow_the_profile(block):
    import json
    res = json.loads(block)
    parsed = parse_consent(res)
    assert parsed.is_active
    for key, expression in INVARIANTS.items():
        assert evaluate(res, expression) == [True], key


def test_doc_has_an_example_for_each_pattern():
    assert len(_doc_examples()) == 5
