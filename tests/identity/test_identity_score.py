"""Tests for hie.identity.features, .score and .index on hand-written JP Core Patients."""

import copy

import pytest

from hie.identity.features import InsuranceId, extract_features, insurance_from_coverage, parse_member_id
from hie.identity.index import MatchIndex, blocking_keys, probe_keys
from hie.identity.score import (CERTAIN, CERTAINLY_NOT, MATCH_GRADE_URL, PROBABLE, Thresholds, compare,
                                edit_distance, match_grade_extension, search_score)

REP = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
MEMBER = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"
FACILITY_A = "urn:oid:1.2.392.100495.20.3.51.10711234567"
FACILITY_B = "urn:oid:1.2.392.100495.20.3.51.11114567890"


def patient(family="山田", given="太郎", kana_family="ヤマダ", kana_given="タロウ", birth="1970-01-01",
            gender="male", address="福島県福島市大町3-4-5", postal="960-8041", phone="024-512-3456",
            member=None, facility=(FACILITY_A, "00000010")):
    names = []
    if family or given:
        names.append({"extension": [{"url": REP, "valueCode": "IDE"}], "family": family, "given": [given]})
    if kana_family or kana_given:
        names.append({"extension": [{"url": REP, "valueCode": "SYL"}], "family": kana_family, "given": [kana_given]})
    p = {"resourceType": "Patient", "name": names, "birthDate": birth, "gender": gender,
         "identifier": [{"system": facility[0], "value": facility[1]}]}
    if address or postal:
        p["address"] = [{"text": address, "postalCode": postal}]
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone}]
    if member:
        p["identifier"].append({"system": MEMBER, "value": member})
    return p


def score(a, b):
    return compare(extract_features(a), extract_features(b))


# --- features -----------------------------------------------------------------------


def test_extract_features_reads_kanji_and_kana_by_representation_extension():
    f = extract_features(patient(family="髙橋", given="惠子", kana_family="ﾀｶﾊｼ", kana_given="けいこ"))
    assert (f.kanji_family, f.kanji_given, f.kana_family, f.kana_given) == ("高橋", "恵子", "タカハシ", "ケイコ")
    assert f.kana_full_key == "タカハシケコ"


def test_extract_features_splits_text_only_names_and_detects_script_without_extension():
    p = {"resourceType": "Patient", "name": [{"text": "山田　太郎"}, {"text": "やまだ　たろう"}]}
    f = extract_features(p)
    assert (f.kanji_family, f.kanji_given, f.kana_family, f.kana_given) == ("山田", "太郎", "ヤマダ", "タロウ")


def test_extract_features_keeps_former_family_names_apart_from_current():
    p = patient()
    p["name"].append({"extension": [{"url": REP, "valueCode": "IDE"}], "use": "maiden", "family": "佐藤",
                      "given": ["花子"]})
    f = extract_features(p)
    assert f.kanji_family == "山田" and f.former_families == frozenset({"佐藤"})


def test_extract_features_contact_and_identifiers():
    f = extract_features(patient(phone="+81-24-512-3456", member="00012345:あいう:１８７:05"))
    assert f.phones == {"0245123456"}
    assert f.postal_codes == {"9608041"}
    assert f.addresses == {"福島市大町3-4-5"}
    assert f.insurance == {InsuranceId("00012345", "アイウ", "187", "05")}
    assert f.facility_ids == {(FACILITY_A, "00000010")}
    assert f.birth_date == "1970-01-01" and f.gender == "male"


@pytest.mark.parametrize(("value", "expected"), [
    ("00012345:あいう:１８７:05", InsuranceId("00012345", "アイウ", "187", "05")),
    ("072017:ア12:0034:1", InsuranceId("00072017", "ア12", "34", "01")),   # NHI: 6-digit insurer
    ("06123456:12-34:5678:", InsuranceId("06123456", "1234", "5678", None)),  # card without branch
    ("39123456::12345678:00", InsuranceId("39123456", "", "12345678", "00")),
    ("123:a:b:00", None),
    ("nonsense", None),
])
def test_parse_member_id(value, expected):
    assert parse_member_id(value) == expected


def test_insurance_from_jp_coverage_extensions():
    coverage = {
        "resourceType": "Coverage",
        "extension": [
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol",
             "valueString": "１２－３４"},
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber",
             "valueString": "５６７８"},
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber",
             "valueString": "００"},
        ],
        "payor": [{"identifier": {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber",
                                  "value": "06123456"}}],
    }
    assert insurance_from_coverage(coverage) == InsuranceId("06123456", "1234", "5678", "00")
    assert extract_features(patient(), [coverage]).insurance == {InsuranceId("06123456", "1234", "5678", "00")}


# --- scoring ------------------------------------------------------------------------


def test_same_person_written_differently_is_certain():
    a = patient()
    b = patient(family="山田", given="太郎", kana_family="ﾔﾏﾀﾞ", kana_given="たろう", address="福島市大町三丁目四番五号",
                postal="９６０８０４１", phone="+81 24 512 3456", facility=(FACILITY_B, "123"))
    result = score(a, b)
    assert result.grade == CERTAIN, result


def test_old_kanji_and_long_vowel_spelling_still_certain():
    a = patient(family="大野", kana_family="オオノ")
    b = patient(family="大野", kana_family="オーノ", facility=(FACILITY_B, "9"))
    c = patient(family="髙野", kana_family="タカノ")
    d = patient(family="高野", kana_family="タカノ", facility=(FACILITY_B, "9"))
    assert score(a, b).grade == CERTAIN
    assert score(c, d).grade == CERTAIN


def test_twins_sharing_birth_date_address_phone_and_policy_do_not_auto_link():
    a = patient(given="優太", kana_given="ユウタ", member="06123456:12:345:01", facility=(FACILITY_A, "1"))
    b = patient(given="優斗", kana_given="ユウト", member="06123456:12:345:02", facility=(FACILITY_B, "2"))
    assert score(a, b).grade not in (CERTAIN, PROBABLE)
    # Even an old card without branch numbers and no kanji cannot make them certain.
    c = patient(family="", given="", kana_given="ユウタ", member="06123456:12:345:")
    d = patient(family="", given="", kana_given="ユウト", member="06123456:12:345:", facility=(FACILITY_B, "2"))
    assert score(c, d).grade != CERTAIN


def test_twins_of_different_sex_stay_below_the_review_band():
    a = patient(given="翔太", kana_given="ショウタ")
    b = patient(given="美咲", kana_given="ミサキ", gender="female", facility=(FACILITY_B, "2"))
    assert score(a, b).score < Thresholds().review


def test_married_name_change_with_everything_else_agreeing_goes_to_review():
    a = patient(family="佐藤", kana_family="サトウ", given="花子", kana_given="ハナコ", gender="female")
    b = patient(family="山田", kana_family="ヤマダ", given="花子", kana_given="ハナコ", gender="female",
                facility=(FACILITY_B, "2"))
    result = score(a, b)
    assert result.grade == PROBABLE, result
    # The same, with the same insured-person id: still a human decision.
    a["identifier"].append({"system": MEMBER, "value": "06123456:12:345:00"})
    b["identifier"].append({"system": MEMBER, "value": "06123456:12:345:00"})
    assert score(a, b).grade == PROBABLE


def test_recorded_maiden_name_counts_as_evidence():
    a = patient(family="佐藤", kana_family="サトウ", given="花子", kana_given="ハナコ", gender="female",
                address=None, postal=None, phone=None)
    b = copy.deepcopy(a)
    b["name"][0]["family"], b["name"][1]["family"] = "山田", "ヤマダ"
    b["identifier"] = [{"system": FACILITY_B, "value": "2"}]
    without = score(a, b).score
    b["name"].append({"extension": [{"url": REP, "valueCode": "IDE"}], "use": "maiden", "family": "佐藤"})
    assert score(a, b).score > without


def test_family_members_on_one_policy_differ_by_branch():
    father = patient(given="太郎", kana_given="タロウ", birth="1970-01-01", member="06123456:12:345:00")
    son = patient(given="一郎", kana_given="イチロウ", birth="1998-05-05", member="06123456:12:345:01",
                  facility=(FACILITY_B, "2"))
    result = score(father, son)
    assert result.levels["insurance"] == "differs"
    assert result.grade == CERTAINLY_NOT


def test_same_insured_person_id_vouches_for_a_birth_date_typo():
    a = patient(member="06123456:12:345:00")
    b = patient(birth="1970-01-10", member="06123456:12:345:00", facility=(FACILITY_B, "2"))
    assert score(a, b).grade == CERTAIN
    c = patient(birth="1970-01-10", facility=(FACILITY_B, "2"))
    assert score(patient(), c).grade == PROBABLE


def test_same_name_and_birth_date_without_corroboration_is_not_certain():
    a = patient(address=None, postal=None, phone=None)
    b = patient(address=None, postal=None, phone=None, facility=(FACILITY_B, "2"))
    assert score(a, b).grade == PROBABLE


def test_one_facility_two_patient_numbers_weighs_against():
    a = patient(facility=(FACILITY_A, "1"))
    b = patient(facility=(FACILITY_A, "2"))
    c = patient(facility=(FACILITY_B, "2"))
    assert score(a, b).score < score(a, c).score


def test_compare_is_symmetric():
    a = patient(kana_family="ヤマタ", member="06123456:12:345:")
    b = patient(family="", given="", phone="090-1111-2222", member="06123456:12:345:00", facility=(FACILITY_B, "2"))
    assert score(a, b) == score(b, a)


def test_thresholds_are_configurable():
    a, b = patient(), patient(facility=(FACILITY_B, "2"))
    fa, fb = extract_features(a), extract_features(b)
    assert compare(fa, fb).grade == CERTAIN
    assert compare(fa, fb, thresholds=Thresholds(auto_link=1000, review=999, possible=998)).grade == CERTAINLY_NOT


@pytest.mark.parametrize(("a", "b", "d"), [("ヤマダ", "ヤマダ", 0), ("ヤマダ", "ヤマタ", 1), ("ヤマダ", "ヤダマ", 1),
                                           ("ヤマダ", "ヤマ", 1), ("サトウ", "カトウ", 1), ("abcdef", "ghijkl", 3)])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == d


def test_match_grade_extension_and_search_score():
    assert match_grade_extension(CERTAIN) == {"url": MATCH_GRADE_URL, "valueCode": "certain"}
    t = Thresholds(auto_link=28, review=12)
    assert search_score(12, t) == 0.5
    assert search_score(28, t) == pytest.approx(0.99, abs=1e-3)
    assert 0 <= search_score(-100, t) < search_score(0, t) < search_score(40, t) <= 1


# --- index --------------------------------------------------------------------------


def test_blocking_keys_are_persistable_strings():
    keys = blocking_keys(extract_features(patient(member="06123456:12:345:01")))
    assert {"kn:ヤマダタロ", "kj:山田太郎", "bg:1970-01-01|male", "bf:1970-01-01|ヤ", "bk:1970-01-01|山",
            "ph:0245123456", "pb:9608041|1970", "ih:06123456:12:345", "in:06123456:12:345:01",
            f"fi:{FACILITY_A}|00000010"} == keys


def test_probe_keys_widen_unknown_gender():
    f = extract_features(patient(gender="unknown"))
    assert {"bg:1970-01-01|male", "bg:1970-01-01|female", "bg:1970-01-01|?"} <= probe_keys(f)


def test_match_ranks_the_same_person_first_and_skips_unrelated():
    index = MatchIndex()
    index.add("p1", patient())
    index.add("twin", patient(given="次郎", kana_given="ジロウ", facility=(FACILITY_A, "11")))
    index.add("other", patient(family="鈴木", given="花子", kana_family="スズキ", kana_given="ハナコ", gender="female",
                               birth="1985-05-05", address="郡山市駅前1-2-3", postal="963-8002", phone="0249999999",
                               facility=(FACILITY_A, "12")))
    results = index.match(patient(kana_family="やまだ", facility=(FACILITY_B, "1")))
    assert results[0].candidate_id == "p1" and results[0].grade == CERTAIN
    assert "other" not in [r.candidate_id for r in results]
    candidate_id, value, grade = results[0]
    assert isinstance(value, float) and grade == CERTAIN


def test_match_only_certain_returns_one_certain_match_or_nothing():
    index = MatchIndex()
    index.add("p1", patient())
    query = patient(facility=(FACILITY_B, "1"))
    assert [r.candidate_id for r in index.match(query, only_certain=True)] == ["p1"]
    index.add("dup", patient(facility=(FACILITY_A, "99")))  # a duplicate registration
    assert index.match(query, only_certain=True) == []
    assert len(index.match(query)) == 2


def test_match_count_limits_results_and_remove_unindexes():
    index = MatchIndex()
    for i in range(5):
        index.add(f"p{i}", patient(facility=(FACILITY_A, str(i))))
    query = patient(facility=(FACILITY_B, "1"))
    assert len(index.match(query, count=2)) == 2
    index.remove("p0")
    assert "p0" not in [r.candidate_id for r in index.match(query)]
    assert len(index) == 4


def test_match_excludes_the_query_record_itself():
    index = MatchIndex()
    index.add("p1", patient())
    assert index.match(patient(), exclude=["p1"]) == []


def test_oversized_blocks_are_skipped():
    index = MatchIndex(max_block=2)
    for i in range(3):  # three people sharing a care home's phone
        index.add(f"r{i}", patient(family="佐藤", given=f"名{i}", kana_family="サトウ", kana_given=f"ナ{i}",
                                   birth=f"19{40 + i}-01-01", facility=(FACILITY_A, str(i))))
    f = extract_features(patient(family="", given="", kana_family="", kana_given="", birth=None,
                                 address=None, postal=None, facility=(FACILITY_B, "x")))
    assert index.candidates(f) == set()
