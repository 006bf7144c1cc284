"""The cross-facility medication list (issue 14, acceptance 3): one row per drug keyed on its
exact drug code; every prescriber's and pharmacy's record under it; similar names never merge;
current vs past only from explicit status or dates; conflicts shown, not resolved."""

from __future__ import annotations

from datetime import date
from typing import Any

from hie.summary.medications import GENERIC, HOT9, HOT13, YJ, reconcile

TODAY = date(2026, 11, 1)
CUSTODIAN = "http://hie.example.jp/fhir/CodeSystem/custodian"


def med(rid: str, rtype: str, codes: list[tuple[str, str]], text: str, status: str, when: str | None,
        facility: str, **extra: Any) -> dict[str, Any]:
    field = {"MedicationRequest": "authoredOn", "MedicationDispense": "whenHandedOver"}.get(rtype, "effectiveDateTime")
    out: dict[str, Any] = {"resourceType": rtype, "id": rid, "status": status,
                           "meta": {"tag": [{"system": CUSTODIAN, "code": facility}]},
                           "medicationCodeableConcept": {"coding": [{"system": s, "code": c} for s, c in codes],
                                                         "text": text},
                           "subject": {"reference": "Patient/p"}, **extra}
    if when:
        out[field] = when
    return out


def source(res: dict[str, Any]) -> str:
    return res["meta"]["tag"][0]["code"]


METFORMIN_250 = (HOT9, "103835401")
METFORMIN_500 = (HOT9, "103835402")  # similar name, another code: another drug
AMLODIPINE_YJ = (YJ, "2171022F1020")

FIXTURE = [
    med("rx-clinic", "MedicationRequest", [METFORMIN_250], "メトホルミン塩酸塩錠250mg", "active", "2026-10-06",
        "clinic", dosageInstruction=[{"text": "1回1錠 1日2回"}]),
    med("rx-hosp", "MedicationRequest", [METFORMIN_250], "メトホルミン塩酸塩錠２５０ｍｇ「トーワ」", "active",
        "2026-09-01", "hospital", dosageInstruction=[{"text": "1回2錠 1日2回"}]),
    med("disp-pharm", "MedicationDispense", [METFORMIN_250], "メトホルミン250mg", "completed",
        "2026-10-06T17:00:00+09:00", "pharmacy", daysSupply={"value": 28}),
    med("rx-500", "MedicationRequest", [METFORMIN_500], "メトホルミン塩酸塩錠500mg", "active", "2026-10-06", "clinic"),
    med("rx-stopped", "MedicationRequest", [(HOT9, "610406079")], "ロキソプロフェンNa錠60mg", "stopped", "2026-03-10",
        "hospital"),
    med("st-amlo", "MedicationStatement", [AMLODIPINE_YJ], "アムロジピン錠5mg", "active", "2026-08-01", "care"),
    med("adm-amlo", "MedicationAdministration", [AMLODIPINE_YJ], "アムロジピンOD錠5mg", "completed",
        "2026-08-02T08:00:00+09:00", "care"),
    med("rx-nocode-1", "MedicationRequest", [], "漢方薬", "active", "2026-10-01", "clinic"),
    med("rx-nocode-2", "MedicationRequest", [], "漢方薬", "active", "2026-10-01", "hospital"),
]


def rows_by_ids() -> dict[frozenset[str], Any]:
    return {frozenset(r.id for r in row.records): row for row in reconcile(FIXTURE, source, today=TODAY)}


def test_exact_duplicates_grouped_and_nothing_else_merged():
    rows = rows_by_ids()
    expected = [
        {"rx-clinic", "rx-hosp", "disp-pharm"},  # two prescribers and a pharmacy, one drug
        {"rx-500"}, {"rx-stopped"}, {"st-amlo", "adm-amlo"}, {"rx-nocode-1"}, {"rx-nocode-2"},
    ]
    assert set(rows) == {frozenset(e) for e in expected}
    # 0 wrong merges: within each row every record carries the row's code
    for row in rows.values():
        for rec in row.records:
            assert not row.codes or set(rec.codes) & set(row.codes)
    assert rows[frozenset({"rx-clinic", "rx-hosp", "disp-pharm"})].sources == ["clinic", "hospital", "pharmacy"]


def test_similar_names_and_missing_codes_never_merge():
    rows = reconcile(FIXTURE, source, today=TODAY)
    metformins = [r for r in rows if any("メトホルミン" in n for n in r.names)]
    assert sorted(r.key for r in metformins) == sorted([METFORMIN_250, METFORMIN_500])
    kampo = [r for r in rows if r.names == ["漢方薬"]]
    assert len(kampo) == 2 and all(r.key is None for r in kampo)


def test_current_and_past_come_only_from_status_or_dates():
    rows = rows_by_ids()
    assert rows[frozenset({"rx-stopped"})].state == "past"
    assert rows[frozenset({"rx-clinic", "rx-hosp", "disp-pharm"})].state == "current"
    disp = next(r for r in rows[frozenset({"rx-clinic", "rx-hosp", "disp-pharm"})].records if r.id == "disp-pharm")
    assert disp.state == "current"  # handed over 2026-10-06 with 28 days: until 2026-11-03
    later = reconcile([FIXTURE[2]], source, today=date(2026, 11, 10))
    assert later[0].state == "past"  # the supply is used up
    undated = med("st-x", "MedicationStatement", [(GENERIC, "2149039F1ZZZ")], "一般名処方", "unknown", None, "clinic")
    assert reconcile([undated], source, today=TODAY)[0].state == "unknown"  # nothing stated: not guessed
    ended = med("rx-end", "MedicationRequest", [(HOT13, "1038354010101")], "x", "active", "2026-01-01", "clinic",
                dispenseRequest={"validityPeriod": {"end": "2026-02-01"}})
    assert reconcile([ended], source, today=TODAY)[0].state == "past"


def test_conflicts_are_shown_not_resolved():
    rows = rows_by_ids()
    met = rows[frozenset({"rx-clinic", "rx-hosp", "disp-pharm"})]
    assert any(c.startswith("dosage:") and "1回1錠" in c and "1回2錠" in c for c in met.conflicts)
    assert len(met.records) == 3  # both prescriptions kept
    stop = med("rx-hosp-stop", "MedicationRequest", [METFORMIN_250], "メトホルミン", "stopped", "2026-10-10",
               "hospital")
    row = next(r for r in reconcile([*FIXTURE, stop], source, today=TODAY) if r.key == METFORMIN_250)
    assert row.state == "current" and any(c.startswith("status:") and "hospital stopped" in c for c in row.conflicts)


def test_two_codes_join_rows_and_different_codes_of_one_system_are_a_conflict():
    both = med("rx-both", "MedicationRequest", [METFORMIN_250, (YJ, "3962002F1024")], "メトホルミン", "active",
               "2026-10-01", "hospital")
    yj_only = med("disp-yj", "MedicationDispense", [(YJ, "3962002F1024")], "メトホルミン", "completed",
                  "2026-10-02", "pharmacy")
    rows = reconcile([FIXTURE[0], both, yj_only], source, today=TODAY)
    assert len(rows) == 1 and {r.id for r in rows[0].records} == {"rx-clinic", "rx-both", "disp-yj"}
    assert rows[0].key == (YJ, "3962002F1024")
    odd = med("rx-odd", "MedicationRequest", [METFORMIN_500, (YJ, "3962002F1024")], "メトホルミン", "active",
              "2026-10-01", "clinic")
    rows = reconcile([both, odd], source, today=TODAY)
    assert len(rows) == 1 and any(c.startswith("codes:HOT9:") for c in rows[0].conflicts)


def test_medication_reference_resolves_to_its_code():
    medication = {"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": HOT9, "code": "103835401"}]}}
    ref = {"resourceType": "MedicationRequest", "id": "rx-ref", "status": "active", "authoredOn": "2026-10-01",
           "medicationReference": {"reference": "Medication/m1"}, "meta": {"tag": [{"code": "x"}]}}
    rows = reconcile([FIXTURE[0], medication, ref], source, today=TODAY)
    assert len(rows) == 1 and {r.id for r in rows[0].records} == {"rx-clinic", "rx-ref"}
