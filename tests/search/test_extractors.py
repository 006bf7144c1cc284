"""Compiled FHIRPath extractors equal fhirpathpy on the corpus, and unit tests of parsing.

Spec: https://hl7.org/fhir/R4/search.html (SearchParameter.expression),
https://hl7.org/fhir/R4/fhirpath.html.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from hie.search.fhirpath import compile_path, expression_for_type, fhirpathpy_extractor, split_union
from hie.search.indexer import extract_rows, reference_values, token_values
from hie.search.normalize import date_range, implicit_range, norm_string, ucum_canonical
from hie.search.query import split_escaped, split_prefix

REPO = Path(__file__).resolve().parents[2]


def _corpus() -> Path:
    return Path(os.environ.get("HIE_CORPUS", REPO.parent / "shared" / "data"))


def _resources() -> list[dict]:
    root = _corpus()
    syn = root / "synthea-r4" / "bundles"
    ex = root / "fhir-r4-examples" / "examples"
    if not syn.exists() or not ex.exists():
        pytest.skip(f"corpus not found under {root} (set HIE_CORPUS)")
    out = []
    for f in sorted(syn.glob("*.json"))[::10]:
        out += [e["resource"] for e in orjson.loads(f.read_bytes())["entry"]]
    for f in sorted(ex.glob("*.json")):
        r = orjson.loads(f.read_bytes())
        if r.get("resourceType") != "Bundle":
            out.append(r)
    return out


def _num(v):
    # fhirpathpy hands numbers back as Decimal; JSON has int/float: compare as numbers.
    if isinstance(v, dict):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_num(x) for x in v]
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return float(v)
    return v


def _canon(values: list) -> list[bytes]:
    return sorted({orjson.dumps(_num(v), option=orjson.OPT_SORT_KEYS) for v in values})


def test_compiled_extractors_equal_fhirpathpy_on_the_corpus(registry):
    resources = _resources()
    compared = 0
    differences = []
    for res in resources:
        rt = res["resourceType"]
        for p in registry.indexed_params(rt):
            if p.type == "composite" or not p.compiled:
                continue
            expr = re.sub(r"(^|\|\s*|\()(Resource|DomainResource)\.", rf"\g<1>{rt}.", p.expression)
            try:
                expected = fhirpathpy_extractor(expr)(res)
            except Exception:
                continue  # fhirpathpy cannot evaluate it; nothing to compare against
            got = p.extractor(res)
            compared += 1
            if _canon(got) != _canon(expected):
                differences.append((rt, res.get("id"), p.code, got, expected))
    print(f"\ncompared {compared} evaluations; {len(differences)} differences")
    assert compared > 50_000
    assert differences == [], differences[:5]


def test_simple_paths_compile_and_others_do_not():
    assert compile_path("Observation.code", "Observation") is not None
    assert compile_path("(Observation.effective as dateTime)", "Observation") is not None
    assert compile_path("Observation.subject.where(resolve() is Patient)", "Observation") is not None
    assert compile_path("Patient.telecom.where(system='phone')", "Patient") is not None
    assert compile_path("Patient.deceased.exists() and Patient.deceased != false", "Patient") is None
    assert compile_path("Bundle.entry[0].resource", "Bundle") is None


def test_compiled_extractor_applies_choice_types_and_resolve_filter():
    obs = {"resourceType": "Observation", "effectivePeriod": {"start": "2020"},
           "subject": {"reference": "Group/1"},
           "performer": [{"reference": "Patient/2"}, {"reference": "Practitioner/3"}],
           "component": [{"valueQuantity": {"value": 1}}, {"valueString": "x"}, {"valueQuantity": {"value": 2}}]}
    assert compile_path("(Observation.effective as dateTime)", "Observation")(obs) == []
    assert compile_path("Observation.effective", "Observation")(obs) == [{"start": "2020"}]
    assert compile_path("Observation.subject.where(resolve() is Patient)", "Observation")(obs) == []
    performers = compile_path("Observation.performer.where(resolve() is Patient)", "Observation")(obs)
    assert performers == [{"reference": "Patient/2"}]
    assert compile_path("(Observation.component.value as Quantity)", "Observation")(obs) == [{"value": 1}, {"value": 2}]


def test_fhirpathpy_fallback_reads_as_over_many_items_as_oftype():
    obs = {"resourceType": "Observation",
           "component": [{"valueQuantity": {"value": 1}}, {"valueQuantity": {"value": 2}}]}
    assert fhirpathpy_extractor("(Observation.component.value as Quantity)")(obs) == [{"value": 1}, {"value": 2}]


def test_expression_for_type_keeps_only_the_parts_of_that_type():
    e = ("AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)"
         " | Observation.subject.where(resolve() is Patient)")
    assert expression_for_type(e, "Observation") == "Observation.subject.where(resolve() is Patient)"
    assert expression_for_type(e, "Patient") is None
    assert split_union("(A.b as C) | A.d.where(x='|')") == ["(A.b as C)", "A.d.where(x='|')"]


@pytest.mark.parametrize(("text", "norm"), [
    ("Yamada", "yamada"), ("MÜLLER", "muller"), ("ﾔﾏﾀﾞ", "ヤマダ"), ("やまだ", "ヤマダ"),
    ("ヤマダ　タロウ", "ヤマダタロウ"), ("ＡＢＣ１", "abc1"), ("Straße", "strasse"), ("ガ", "ガ"),
])
def test_string_normalization(text, norm):
    assert norm_string(text) == norm


@pytest.mark.parametrize(("value", "low", "high"), [
    # dates, and dateTimes without a zone, are read in the node's zone (JST): consent.periods
    ("2020", "2019-12-31T15:00:00.000000", "2020-12-31T14:59:59.999999"),
    ("2020-02", "2020-01-31T15:00:00.000000", "2020-02-29T14:59:59.999999"),
    ("2021-02-28", "2021-02-27T15:00:00.000000", "2021-02-28T14:59:59.999999"),
    ("2021-03-01T19:00:00", "2021-03-01T10:00:00.000000", "2021-03-01T10:00:00.999999"),
    ("2021-03-01T10:00:00Z", "2021-03-01T10:00:00.000000", "2021-03-01T10:00:00.999999"),
    ("2021-03-01T19:00:00+09:00", "2021-03-01T10:00:00.000000", "2021-03-01T10:00:00.999999"),
    ("2021-03-01T10:00:00.5Z", "2021-03-01T10:00:00.500000", "2021-03-01T10:00:00.599999"),
    ("2021-03-01T10:00Z", "2021-03-01T10:00:00.000000", "2021-03-01T10:00:59.999999"),
])
def test_date_ranges_follow_precision(value, low, high):
    from datetime import UTC, datetime

    def us(s: str) -> int:
        d = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        return int(d.timestamp()) * 1_000_000 + d.microsecond

    assert date_range(value) == (us(low), us(high))


@pytest.mark.parametrize("bad", ["2020-13", "2021-02-29", "20200101", "2020-01-01T25:00Z", "x"])
def test_invalid_dates_are_rejected(bad):
    with pytest.raises(ValueError):
        date_range(bad)


def test_number_implicit_range_follows_significant_figures():
    assert implicit_range(Decimal("100")) == (99.5, 100.5)
    assert implicit_range(Decimal("0.30")) == (0.295, 0.305)
    assert implicit_range(Decimal("1e2")) == (50.0, 150.0)


def test_ucum_canonical_units():
    assert ucum_canonical(Decimal("5.4"), "kg") == (Decimal("5400.0"), "g")
    assert ucum_canonical(Decimal("95"), "mg/dL") == (Decimal("0.95"), "g/L")
    assert ucum_canonical(Decimal("1"), "mm[Hg]") == (Decimal("1"), "mm[Hg]")
    assert ucum_canonical(Decimal("1"), "{beats}/min") is None


def test_token_values_of_each_data_type():
    assert token_values(True) == [(None, "true", None, "")]
    assert token_values({"coding": [{"system": "s", "code": "c", "display": "Dïsplay"}], "text": "T"}) == [
        ("s", "c", "display", ""), (None, None, "t", "")]
    assert token_values({"system": "urn:x", "value": "1", "type": {"coding": [{"system": "ts", "code": "MR"}]}}) == [
        ("urn:x", "1", None, ""), ("ts", "MR|1", None, ":of-type")]
    assert token_values({"system": "phone", "value": "03"}) == [(None, "03", None, "")]


def test_reference_values():
    assert reference_values({"reference": "Patient/1"}) == [("Patient", "1", None)]
    assert reference_values({"reference": "Patient/1/_history/2"}) == [("Patient", "1", None)]
    assert reference_values({"reference": "http://x/fhir/Patient/1"}) == [(None, None, "http://x/fhir/Patient/1")]
    assert reference_values({"reference": "#contained"}) == []
    assert reference_values("http://x/Questionnaire/q|1") == [(None, None, "http://x/Questionnaire/q")]


def test_search_value_parsing_helpers():
    assert split_escaped(r"a,b\,c", ",") == ["a", r"b\,c"]
    assert split_prefix("ge2020") == ("ge", "2020")
    assert split_prefix("gen") == ("eq", "gen")


def test_extract_rows_deduplicates_and_uses_every_table(registry):
    obs = {"resourceType": "Observation", "id": "1", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1"},
                               {"system": "http://loinc.org", "code": "1"}]},
           "subject": {"reference": "Patient/9"}, "effectiveDateTime": "2020",
           "valueQuantity": {"value": 2, "system": "http://unitsofmeasure.org", "code": "mg"}}
    rows = extract_rows(registry, "Observation", obs)
    codes = [r for r in rows["search_token"] if r["param"] == "code"]
    assert codes == [{"param": "code", "system": "http://loinc.org", "code": "1", "text_norm": None}]
    q = [r for r in rows["search_quantity"] if r["param"] == "value-quantity"]
    assert q[0]["canon_code"] == "g" and q[0]["canon_value"] == pytest.approx(0.002)
    assert {r["param"] for r in rows["search_reference"]} >= {"subject", "patient"}
    assert {r["param"] for r in rows["search_composite"]} >= {"code-value-quantity", "combo-code-value-quantity"}


def test_capability_params_list_only_supported_parameters(registry):
    names = {p["name"] for p in registry.capability_params("Patient")}
    assert {"family", "birthdate", "identifier", "_id", "_lastUpdated", "_tag"} <= names
    assert "_text" not in names and "_content" not in names and "_query" not in names
    assert "near" not in {p["name"] for p in registry.capability_params("Location")}
    entry = next(p for p in registry.capability_params("Patient") if p["name"] == "family")
    assert entry["definition"] == "http://hl7.org/fhir/SearchParameter/individual-family" and entry["type"] == "string"


def test_registered_search_parameter_adds_a_searchable_parameter(registry):
    from hie.search.registry import SearchRegistry

    reg = SearchRegistry.from_files(
        REPO / "hie" / "definitions" / "search-parameters.json",
        REPO / "hie" / "definitions" / "compartmentdefinition-patient.json")
    reg.register({"resourceType": "SearchParameter", "url": "http://example.org/sp/kana", "code": "kana",
                  "base": ["Patient"], "type": "string",
                  "expression": "Patient.name.where(use='usual').family"})
    p = reg.get("Patient", "kana")
    assert p is not None and p.supported
    pat = {"resourceType": "Patient", "name": [{"use": "usual", "family": "ヤマダ"}, {"family": "Yamada"}]}
    assert p.extractor(pat) == ["ヤマダ"]
    assert "kana" in {x["name"] for x in reg.capability_params("Patient")}
