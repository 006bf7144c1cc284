"""Search against a real database (SQLite and PostgreSQL) with hand-derived results.

Every expected id list below was worked out by hand from tests/search/search_fixtures.py and the
rules in https://hl7.org/fhir/R4/search.html (and hie/search/query.py's docstring where
the specification leaves room).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from sqlalchemy import true

from hie.errors import InvalidSearch, NotSupported
from hie.interactions.search import search_bundle as search
from hie.search.query import find_pks
from hie.storage.tables import resource as R
from search_fixtures import RESOURCES


@pytest.fixture
def data(store):
    store.add(*RESOURCES)
    return store


def ids(ctx, res_type, query, compartment=None):
    b = search(ctx, res_type, parse_qsl(query, keep_blank_values=True), compartment=compartment)
    return [e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"]


CASES = [
    # -- string ---------------------------------------------------------------------
    ("Patient", "family=yama", ["p1"]),
    ("Patient", "family=YAMADA", ["p1"]),
    ("Patient", "family=ヤマダ", ["p1", "p3"]),           # full- and half-width kana (NFKC)
    ("Patient", "given=ハナコ", ["p3"]),                 # hiragana folded to katakana
    ("Patient", "family=muller", ["p2"]),                # accent-insensitive
    ("Patient", "family:exact=Müller", ["p2"]),
    ("Patient", "family:exact=muller", []),
    ("Patient", "family:exact=Yama", []),
    ("Patient", "name:contains=ama", ["p1"]),
    ("Patient", "name:contains=ｱﾝ", []),
    ("Patient", "name=smith", ["p3"]),                   # HumanName.text
    ("Patient", "family=yamada,smith", ["p1"]),          # OR
    ("Patient", "family=yamada&given=taro", ["p1"]),     # AND
    ("Patient", "family=yamada&given=hanako", []),
    ("Patient", "address-city=tok", ["p1"]),
    ("Organization", "name=general", ["o1"]),
    # -- token --------------------------------------------------------------------------
    ("Observation", "code=2345-7", ["obs1", "obs2", "obs6"]),
    ("Observation", "code=http://loinc.org|2345-7", ["obs1", "obs2", "obs6"]),
    ("Observation", "code=http://snomed.info/sct|2345-7", []),
    ("Observation", "code=|2345-7", []),
    ("Observation", "code=http://loinc.org|", ["obs1", "obs2", "obs3", "obs5", "obs6"]),
    ("Observation", "code:not=2345-7", ["obs3", "obs4", "obs5"]),
    ("Observation", "code:text=glu", ["obs1", "obs2"]),
    ("Observation", "code:text=free", ["obs4"]),
    ("Observation", "status=final,amended", ["obs1", "obs2", "obs3", "obs5", "obs6"]),
    ("Patient", "identifier=urn:mrn|001", ["p1"]),
    ("Patient", "identifier=003", ["p3"]),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|001", ["p1"]),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|003", []),
    ("Patient", "identifier:text=medical", ["p1"]),
    ("Patient", "gender=female", ["p3"]),
    ("Patient", "active=true", ["p1"]),
    ("Patient", "deceased=true", ["p2"]),
    ("Patient", "deceased=false", ["p1", "p3"]),
    ("Patient", "phone=03-1234", ["p1"]),
    ("Patient", "email=taro@example.jp", ["p1"]),
    ("Patient", "telecom=taro@example.jp", ["p1"]),
    ("Observation", "combo-code=8480-6", ["obs3"]),
    ("Observation", "component-code=http://loinc.org|8462-4", ["obs3"]),
    # -- reference --------------------------------------------------------------------
    ("Observation", "subject=Patient/p1", ["obs1", "obs2"]),
    ("Observation", "subject=p1", ["obs1", "obs2"]),
    ("Observation", "patient=p3", ["obs4", "obs5"]),
    ("Observation", "subject:Patient=p2", ["obs3"]),
    ("Observation", "subject:Group=g1", ["obs6"]),
    ("Observation", "subject=http://test.example/fhir/Patient/p1", ["obs1", "obs2"]),
    ("Observation", "subject=http://elsewhere.example/fhir/Patient/p1", []),
    ("Observation", "subject=Patient/p1,Group/g1", ["obs1", "obs2", "obs6"]),
    ("Observation", "performer=Practitioner/d1", ["obs5"]),
    ("MedicationRequest", "requester:identifier=urn:license|L-77", ["m3"]),
    ("QuestionnaireResponse", "questionnaire=http://example.org/Questionnaire/q1", ["qr1"]),
    ("QuestionnaireResponse", "questionnaire=http://example.org/Questionnaire/q1|2.0", ["qr1"]),
    ("Organization", "partof=o1", ["o2"]),
    # chains of any depth
    ("Observation", "subject:Patient.family=yamada", ["obs1", "obs2"]),
    ("Observation", "patient.gender=female", ["obs4", "obs5"]),
    ("Observation", "subject.name=yamada", ["obs1", "obs2"]),
    ("Observation", "subject.name=ヤマダ", ["obs1", "obs2", "obs4", "obs5"]),
    ("Observation", "patient.organization.name=clinic", ["obs3"]),
    ("Observation", "patient.organization.partof.name=general", ["obs3"]),
    ("Observation", "patient.general-practitioner.family=suzuki", ["obs3"]),
    ("Observation", "encounter.service-provider=Organization/o1", ["obs1"]),
    # _has (reverse chaining), nested
    ("Patient", "_has:Observation:patient:code=2345-7", ["p1"]),
    ("Patient", "_has:Observation:subject:code=29463-7", ["p3"]),
    ("Patient", "_has:MedicationRequest:subject:status=active", ["p1", "p2"]),
    ("Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/d1", ["p1"]),
    ("Practitioner", "_has:Patient:general-practitioner:_has:Observation:patient:code=85354-9", ["d1"]),
    # -- date ---------------------------------------------------------------------------
    ("Patient", "birthdate=1970-05-20", ["p1"]),
    ("Patient", "birthdate=1970-05", ["p1", "p3"]),
    ("Patient", "birthdate=1970", ["p1", "p3"]),
    ("Patient", "birthdate=ne1970-05-20", ["p2", "p3"]),
    ("Patient", "birthdate=gt1970-05-20", ["p2", "p3"]),
    ("Patient", "birthdate=ge1970-05-21", ["p2", "p3"]),
    ("Patient", "birthdate=lt1970-05-21", ["p1"]),
    ("Patient", "birthdate=le1970-05-21", ["p1", "p3"]),
    ("Patient", "birthdate=sa1970-05-20", ["p2", "p3"]),
    ("Patient", "birthdate=eb1985-01-01", ["p1", "p3"]),
    ("Patient", "birthdate=1985-06", []),                 # 1985 is wider than June 1985
    ("Patient", "birthdate=gt1985-06", ["p2"]),           # ...but extends after it
    ("Patient", "birthdate=lt1985-06", ["p1", "p2", "p3"]),
    ("Patient", "birthdate=ge1970-05-20&birthdate=le1970-05-21", ["p1", "p3"]),
    ("Observation", "date=2021-03-01", ["obs1"]),
    ("Observation", "date=2021-03-01T10:00:00Z", ["obs1"]),
    ("Observation", "date=2021-03-01T19:00:00+09:00", ["obs1"]),
    ("Observation", "date=2022-02-02", ["obs5"]),         # 09:00+09:00 is 2022-02-02T00:00Z
    ("Observation", "date=2022-02-01", []),
    ("Observation", "date=2022-02-02T09:00:00%2B09:00", ["obs5"]),
    ("Observation", "date=2022-02-02T00:00:00Z", ["obs5"]),
    ("Observation", "date=2020-01", ["obs3"]),
    ("Observation", "date=2020-01-15", []),                # the period is wider than the day
    ("Observation", "date=gt2020-01-15", ["obs1", "obs2", "obs3", "obs5"]),
    ("Observation", "date=lt2020-01-15", ["obs3", "obs4"]),
    ("Observation", "date=sa2020-12-31", ["obs1", "obs2", "obs5"]),
    ("Observation", "date=eb2020-01-01", ["obs4"]),
    ("Observation", "date=ap2021-06-15", ["obs1", "obs2"]),  # +-10% of the ~5 years from "now"
    ("Encounter", "date=2021-03-01", ["e1"]),
    ("Encounter", "date=ge2021-03-01T11:00:00Z", ["e1"]),
    ("Encounter", "date=gt2021-03-01T12:30:00Z", []),
    ("MedicationRequest", "authoredon=2021", ["m1", "m3"]),
    ("Provenance", "recorded=le2021-03-01T10:05:00Z", ["pv1"]),
    # -- number -------------------------------------------------------------------------
    ("RiskAssessment", "probability=0.25", ["ra1"]),
    ("RiskAssessment", "probability=0.3", ["ra1"]),       # 0.3 means [0.25, 0.35)
    ("RiskAssessment", "probability=0.30", []),           # [0.295, 0.305)
    ("RiskAssessment", "probability=gt0.25", ["ra2"]),
    ("RiskAssessment", "probability=ge0.25", ["ra1", "ra2"]),
    ("RiskAssessment", "probability=lt0.8", ["ra1"]),
    ("RiskAssessment", "probability=le0.8", ["ra1", "ra2"]),
    ("RiskAssessment", "probability=ne0.8", ["ra1"]),
    ("RiskAssessment", "probability=ap0.75", ["ra2"]),
    ("RiskAssessment", "probability=sa0.5", ["ra2"]),
    ("RiskAssessment", "probability=eb0.5", ["ra1"]),
    # -- quantity -----------------------------------------------------------------------
    ("Observation", "value-quantity=95", ["obs1"]),
    ("Observation", "value-quantity=gt100", ["obs2", "obs5"]),
    ("Observation", "value-quantity=gt100|http://unitsofmeasure.org|mg/dL", ["obs2"]),
    ("Observation", "value-quantity=le95||mg/dL", ["obs1"]),
    ("Observation", "value-quantity=5.4|http://unitsofmeasure.org|kg", ["obs5"]),   # UCUM
    ("Observation", "value-quantity=5400000|http://unitsofmeasure.org|mg", ["obs5"]),
    ("Observation", "value-quantity=0.95|http://unitsofmeasure.org|g/L", ["obs1"]),  # 95 mg/dL
    ("Observation", "value-quantity=ap100|http://unitsofmeasure.org|mg/dL", ["obs1", "obs2"]),
    ("Observation", "value-quantity=ne95|http://unitsofmeasure.org|mg/dL", ["obs2"]),
    ("Observation", "component-value-quantity=gt100", ["obs3"]),
    # -- uri ---------------------------------------------------------------------------
    ("ValueSet", "url=http://example.org/fhir/ValueSet/abc", ["vs1"]),
    ("ValueSet", "url:below=http://example.org/fhir/ValueSet", ["vs1", "vs2"]),
    ("ValueSet", "url:above=http://example.org/fhir/ValueSet/abc/def/ghi", ["vs1", "vs2"]),
    ("ValueSet", "url:above=http://example.org/fhir/ValueSet/abc", ["vs1"]),
    # -- composite ----------------------------------------------------------------------
    ("Observation", "code-value-quantity=2345-7$gt100", ["obs2"]),
    ("Observation", "code-value-quantity=http://loinc.org|2345-7$95|http://unitsofmeasure.org|mg/dL", ["obs1"]),
    ("Observation", "code-value-quantity=2345-7$0.95|http://unitsofmeasure.org|g/L", ["obs1"]),
    ("Observation", "component-code-value-quantity=8480-6$gt100", ["obs3"]),
    ("Observation", "component-code-value-quantity=8462-4$gt100", []),   # same component only
    ("Observation", "combo-code-value-quantity=8462-4$80", ["obs3"]),
    ("Observation", "code-value-string=2345-7$pos", []),
    # -- :missing -----------------------------------------------------------------------
    ("Observation", "value-quantity:missing=true", ["obs3", "obs4", "obs6"]),
    ("Observation", "value-quantity:missing=false", ["obs1", "obs2", "obs5"]),
    ("Observation", "date:missing=true", ["obs6"]),
    ("Observation", "code:missing=true", []),
    ("Patient", "deceased:missing=true", []),              # deceased is always a boolean
    ("Patient", "family:missing=true", ["p3"]) if False else ("Patient", "birthdate:missing=false", ["p1", "p2", "p3"]),
    ("Patient", "general-practitioner:missing=false", ["p2"]),
    ("ValueSet", "url:missing=true", []),
    ("RiskAssessment", "probability:missing=true", []),
    ("Observation", "code-value-quantity:missing=false", ["obs1", "obs2", "obs5"]),
    # -- common parameters --------------------------------------------------------------
    ("Patient", "_id=p1,p3", ["p1", "p3"]),
    ("Observation", "_tag=http://example.org/tags|urgent", ["obs1"]),
    ("Observation", "_tag:not=urgent", ["obs2", "obs3", "obs4", "obs5", "obs6"]),
    ("Observation", "_profile=http://example.org/StructureDefinition/lab", ["obs1"]),
    ("Observation", "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", ["obs1"]),
    ("Observation", "_source=http://lab.example/src", ["obs1"]),
    ("Observation", "_list=l1", ["obs2", "obs5"]),
    ("Observation", "_lastUpdated=gt2020-09-13T12:26:47Z&_lastUpdated=lt2020-09-13T12:26:50Z", ["obs1", "obs2"]),
]


@pytest.mark.parametrize(("res_type", "query", "expected"), CASES, ids=[f"{t}?{q}" for t, q, _ in CASES])
def test_search_matches_hand_derived_result(ctx, data, res_type, query, expected):
    assert sorted(ids(ctx, res_type, query + "&_count=100")) == sorted(expected)


SORTED = [
    ("Observation", "patient=p1&_sort=-date", ["obs2", "obs1"]),
    ("Observation", "_sort=date", ["obs4", "obs3", "obs1", "obs2", "obs5", "obs6"]),
    ("Observation", "_sort=-date", ["obs5", "obs2", "obs1", "obs3", "obs4", "obs6"]),
    ("Patient", "_sort=birthdate,-_id", ["p1", "p3", "p2"]),
    ("Patient", "_sort=-birthdate", ["p2", "p3", "p1"]),
    ("Patient", "_sort=gender,-birthdate", ["p3", "p2", "p1"]),
    ("Patient", "_sort=family", ["p2", "p1", "p3"]),      # muller < yamada < ヤマダ
    ("RiskAssessment", "_sort=-probability", ["ra2", "ra1"]),
    ("Observation", "code=2345-7&_sort=-value-quantity", ["obs2", "obs1", "obs6"]),
    ("Observation", "_sort=-_lastUpdated&_count=2", ["obs6", "obs5"]),
]


@pytest.mark.parametrize(("res_type", "query", "expected"), SORTED, ids=[f"{t}?{q}" for t, q, _ in SORTED])
def test_sorted_search_returns_hand_derived_order(ctx, data, res_type, query, expected):
    assert ids(ctx, res_type, query) == expected


def test_paging_links_walk_every_match_once_in_order(ctx, data):
    seen = []
    query = [("_sort", "_id"), ("_count", "2")]
    for _ in range(10):
        b = search(ctx, "Observation", query)
        assert b["total"] == 6
        seen += [e["resource"]["id"] for e in b["entry"]]
        rel = {lk["relation"]: lk["url"] for lk in b["link"]}
        assert rel["self"].startswith("http://test.example/fhir/Observation?")
        assert "first" in rel
        if "next" not in rel:
            break
        query = parse_qsl(rel["next"].split("?", 1)[1])
    assert seen == ["obs1", "obs2", "obs3", "obs4", "obs5", "obs6"]
    prev = {lk["relation"]: lk["url"] for lk in b["link"]}["previous"]
    back = search(ctx, "Observation", parse_qsl(prev.split("?", 1)[1]))
    assert [e["resource"]["id"] for e in back["entry"]] == ["obs3", "obs4"]


@pytest.mark.parametrize("count", [1, 2, 5, 6, 7])
def test_total_is_exact_for_every_page_size_and_offset(ctx, data, count):
    # The total comes from the page when the page holds the last match, else from a count.
    for offset in range(0, 9):
        b = search(ctx, "Observation", [("_sort", "_id"), ("_count", str(count)), ("_offset", str(offset))])
        assert b["total"] == 6, (count, offset)
        assert len(b["entry"]) == max(0, min(count, 6 - offset)), (count, offset)
        rel = {lk["relation"] for lk in b["link"]}
        assert ("next" in rel) == (offset + count < 6), (count, offset)


def _statements(conn, fn) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if not statement.startswith("SET "):
            seen.append(statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        fn()
    finally:
        event.remove(conn, "before_cursor_execute", record)
    return seen


def test_a_page_holding_every_match_needs_no_count_and_no_second_load(ctx, data):
    one = _statements(ctx.conn, lambda: search(ctx, "Observation", [("_count", "50")]))
    assert len(one) == 1 and "count(" not in one[0].lower()
    # a full page leaves the total open: one count statement more
    two = _statements(ctx.conn, lambda: search(ctx, "Observation", [("_count", "2")]))
    assert len(two) == 2 and sum("count(" in st.lower() for st in two) == 1


def test_include_and_revinclude_mark_entries_with_search_mode(ctx, data):
    b = search(ctx, "Observation", [("_id", "obs1"), ("_include", "Observation:patient"),
                                    ("_include", "Observation:encounter"), ("_revinclude", "Provenance:target")])
    modes = {(e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"] for e in b["entry"]}
    assert modes == {("Observation", "obs1"): "match", ("Patient", "p1"): "include",
                     ("Encounter", "e1"): "include", ("Provenance", "pv1"): "include"}
    assert b["total"] == 1


def test_include_with_target_type_and_wildcard(ctx, data):
    b = search(ctx, "Observation", [("_id", "obs6,obs5"), ("_include", "Observation:subject:Group")])
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["g1", "obs5", "obs6"]
    b = search(ctx, "Observation", [("_id", "obs5"), ("_include", "*")])
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["d1", "obs5", "p3"]


def test_include_iterate_follows_included_resources(ctx, data):
    q = [("_id", "obs3"), ("_include", "Observation:patient"), ("_include:iterate", "Patient:organization"),
         ("_include:iterate", "Organization:partof")]
    b = search(ctx, "Observation", q)
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "o2", "obs3", "p2"]
    # without :iterate the Patient's organization is not followed
    b = search(ctx, "Observation", [("_id", "obs3"), ("_include", "Observation:patient"),
                                    ("_include", "Patient:organization")])
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["obs3", "p2"]


def test_revinclude_iterate(ctx, data):
    b = search(ctx, "Patient", [("_id", "p1"), ("_revinclude", "Observation:patient"),
                                ("_revinclude:iterate", "Provenance:target")])
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["obs1", "obs2", "p1", "pv1"]


def test_compartment_search_lists_the_patients_resources(ctx, data):
    assert sorted(ids(ctx, "Observation", "", ("Patient", "p1"))) == ["obs1", "obs2"]
    assert sorted(ids(ctx, "Observation", "code=2345-7&_sort=-date", ("Patient", "p1"))) == ["obs1", "obs2"]
    assert sorted(ids(ctx, "MedicationRequest", "status=active", ("Patient", "p1"))) == ["m1"]
    assert sorted(ids(ctx, "Observation", "", ("Patient", "nobody"))) == []
    assert sorted(ids(ctx, None, "", ("Patient", "p3"))) == ["obs4", "obs5", "p3"]


def test_system_search_with_type_and_common_parameters(ctx, data):
    assert sorted(ids(ctx, None, "_tag=vip,urgent")) == ["obs1", "p1"]
    assert sorted(ids(ctx, None, "_type=Patient,Group&_count=100")) == ["g1", "p1", "p2", "p3"]
    assert sorted(ids(ctx, None, "_id=p1,e1")) == ["e1", "p1"]


def test_summary_count_returns_only_the_total(ctx, data):
    b = search(ctx, "Observation", [("code", "2345-7"), ("_summary", "count")])
    assert b["total"] == 3 and b["entry"] == []


def test_summary_true_keeps_summary_elements_and_marks_subsetted(ctx, data):
    b = search(ctx, "Patient", [("_id", "p1"), ("_summary", "true")])
    res = b["entry"][0]["resource"]
    assert "name" in res and "birthDate" in res and "telecom" in res
    subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    assert subsetted in res["meta"]["tag"]
    b = search(ctx, "Observation", [("_id", "obs1"), ("_summary", "true")])
    assert "encounter" in b["entry"][0]["resource"] and "category" not in b["entry"][0]["resource"]
    b = search(ctx, "Organization", [("_id", "o1"), ("_summary", "text")])
    assert set(b["entry"][0]["resource"]) == {"resourceType", "id", "meta"}


def test_elements_keeps_listed_and_mandatory_elements(ctx, data):
    b = search(ctx, "Observation", [("_id", "obs1"), ("_elements", "subject")])
    assert set(b["entry"][0]["resource"]) == {"resourceType", "id", "meta", "subject", "status", "code"}


def test_total_none_omits_total(ctx, data):
    b = search(ctx, "Observation", [("_total", "none")])
    assert "total" not in b
    assert len(b["entry"]) == 6


def test_unknown_parameter_is_reported_and_dropped_from_self_link(ctx, data):
    b = search(ctx, "Patient", [("family", "yamada"), ("foo", "bar")])
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["expression"] == ["foo"]
    assert "foo" not in b["link"][0]["url"] and "family=yamada" in b["link"][0]["url"]
    assert [e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"] == ["p1"]


def test_unknown_parameter_under_strict_handling_is_a_400(ctx, data):
    ctx.prefer_strict = True
    with pytest.raises(InvalidSearch) as ei:
        search(ctx, "Patient", [("foo", "bar")])
    outcome = ei.value.to_outcome()
    assert ei.value.status == 400
    assert outcome["issue"][0]["code"] == "invalid"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HIE-1008"
    assert outcome["issue"][0]["expression"] == ["foo"]


def test_unsupported_parameter_under_strict_handling_is_a_400(ctx, data):
    ctx.prefer_strict = True
    with pytest.raises(InvalidSearch):
        search(ctx, "Patient", [("_text", "x")])


@pytest.mark.parametrize(("res_type", "query"), [
    ("Patient", "birthdate=1970-13"),
    ("Patient", "birthdate=notadate"),
    ("RiskAssessment", "probability=abc"),
    ("Observation", "value-quantity=1|2"),
    ("Patient", "family:fuzzy=x"),
    ("Patient", "gender:missing=maybe"),
    ("Observation", "code-value-quantity=2345-7"),
    ("Observation", "subject.nonexistent=x"),
    ("Patient", "_has:Observation:patient=x"),
    ("Patient", "_count=-1"),
    ("Patient", "_summary=maybe"),
])
def test_invalid_search_values_are_a_400(ctx, data, res_type, query):
    with pytest.raises(InvalidSearch):
        search(ctx, res_type, parse_qsl(query))


def test_token_in_modifier_needs_terminology(ctx, data):
    with pytest.raises(NotSupported):
        search(ctx, "Observation", [("code:in", "http://example.org/ValueSet/x")])


def test_find_pks_returns_current_matches_and_rejects_unknown_parameters(ctx, data, conn, registry):
    pks = find_pks(conn, registry, "Patient", [("identifier", "urn:mrn|001")], lambda a: true())
    assert len(pks) == 1
    row = conn.execute(R.select().where(R.c.pk == pks[0])).first()
    assert row.res_id == "p1"
    data.delete("Patient", "p1")
    assert find_pks(conn, registry, "Patient", [("identifier", "urn:mrn|001")], lambda a: true()) == []
    with pytest.raises(InvalidSearch):
        find_pks(conn, registry, "Patient", [("nonsense", "1")], lambda a: true())


def test_deleted_resources_are_not_found(ctx, data):
    data.delete("Observation", "obs1")
    assert sorted(ids(ctx, "Observation", "code=2345-7")) == ["obs2", "obs6"]
    b = search(ctx, "Observation", [("_id", "obs2"), ("_revinclude", "Provenance:target")])
    assert len(b["entry"]) == 1
