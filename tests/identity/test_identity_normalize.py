"""Unit tests for hie.identity.normalize: one case table per normalization rule."""

import pytest

from hie.identity import normalize as n


@pytest.mark.parametrize(("raw", "expected"), [
    ("ﾔﾏﾀﾞ", "ヤマダ"),            # half-width katakana with voicing mark
    ("ﾊﾟﾝﾀﾞ", "パンダ"),           # half-width handakuten
    ("やまだ", "ヤマダ"),           # hiragana
    ("ヤマダ　タロウ", "ヤマダタロウ"),  # ideographic space
    ("ヤマダ タロウ", "ヤマダタロウ"),   # ASCII space
    ("スミス・ジョン", "スミスジョン"),  # middle dot
    ("ｽﾐｽ･ｼﾞｮﾝ", "スミスジョン"),     # half-width middle dot
    ("サト-", "サトー"),             # hyphen typed as long-vowel mark
    ("ｻﾄｰ", "サトー"),              # half-width long-vowel mark
    ("サヽキ", "ササキ"),             # iteration mark
    ("みすゞ", "ミスズ"),             # voiced iteration mark
    ("", ""),
    (None, ""),
])
def test_normalize_kana_folds_width_script_and_separators(raw, expected):
    assert n.normalize_kana(raw) == expected


@pytest.mark.parametrize("variants", [
    ("オオノ", "オーノ", "オノ", "おおの", "ｵｰﾉ"),
    ("サトウ", "サトー", "さとう"),
    ("ユウコ", "ユーコ", "ユコ"),
    ("キョウコ", "キヨウコ", "きょうこ"),   # small kana
    ("ケイコ", "ケーコ"),                 # イ after an e-row mora
    ("シンジ", "シンヂ"),                 # ヂ/ジ
    ("ミズキ", "ミヅキ"),                 # ヅ/ズ
])
def test_kana_key_is_equal_for_spellings_of_one_reading(variants):
    assert len({n.kana_key(v) for v in variants}) == 1


@pytest.mark.parametrize(("a", "b"), [("サトウ", "カトウ"), ("ユウタ", "ユウト"), ("ヤマダ", "ヤマタ")])
def test_kana_key_keeps_different_readings_apart(a, b):
    assert n.kana_key(a) != n.kana_key(b)


@pytest.mark.parametrize(("a", "b"), [("ヤマダ", "ヤマタ"), ("バンナイ", "ハンナイ"), ("パンダ", "ハンタ")])
def test_kana_loose_ignores_voicing_marks(a, b):
    assert n.kana_loose(a) == n.kana_loose(b)


@pytest.mark.parametrize(("old", "new"), [
    ("髙橋", "高橋"), ("山﨑", "山崎"), ("渡邊", "渡辺"), ("渡邉", "渡辺"), ("齋藤", "斎藤"), ("齊藤", "斎藤"),
    ("斉藤", "斎藤"), ("澤田", "沢田"), ("濱田", "浜田"), ("國分", "国分"), ("廣瀬", "広瀬"), ("櫻井", "桜井"),
    ("德永", "徳永"), ("惠子", "恵子"), ("藏本", "蔵本"), ("龍也", "竜也"), ("眞一", "真一"), ("縣", "県"),
    ("中嶋", "中島"), ("冨田", "富田"), ("關", "関"), ("學", "学"), ("𠮷田", "吉田"), ("瀧澤", "滝沢"),
])
def test_normalize_kanji_folds_old_and_variant_forms(old, new):
    assert n.normalize_kanji(old) == n.normalize_kanji(new) == new


@pytest.mark.parametrize(("raw", "expected"), [
    ("山田　太郎", "山田太郎"),
    ("佐々木", "佐佐木"),          # 々 spelled out so 佐佐木 agrees
    ("さくら", "サクラ"),          # a hiragana given name typed in katakana elsewhere
    ("辻\U000E0100", "辻"),        # ideographic variation selector dropped
    ("神", "神"),                  # CJK compatibility ideograph U+FA19 via NFKC
])
def test_normalize_kanji_handles_spaces_iteration_and_compatibility_forms(raw, expected):
    assert n.normalize_kanji(raw) == expected


def test_kanji_variant_table_has_one_canonical_form_per_character():
    variants = [ch for line in n.KANJI_VARIANTS.split("\n") if line for ch in line.split()[1:]]
    canonical = [line.split()[0] for line in n.KANJI_VARIANTS.split("\n") if line]
    assert len(variants) == len(set(variants))
    assert not set(variants) & set(canonical)


@pytest.mark.parametrize(("raw", "expected"), [
    ("090-1234-5678", "09012345678"),
    ("０９０－１２３４－５６７８", "09012345678"),
    ("+81-90-1234-5678", "09012345678"),
    ("+81 (0)3 1234 5678", "0312345678"),
    ("0081-24-512-3456", "0245123456"),
    ("(024)512-3456", "0245123456"),
    ("1234-5678", None),        # no area code
    ("81-90-1234-5678", None),  # no "+": not read as a country code
    ("", None),
])
def test_normalize_phone(raw, expected):
    assert n.normalize_phone(raw) == expected


def test_is_mobile_tells_mobile_from_landline():
    assert n.is_mobile("09012345678") and n.is_mobile("07012345678")
    assert not n.is_mobile("0245123456")


@pytest.mark.parametrize(("raw", "expected"), [
    ("960-8041", "9608041"), ("〒960-8041", "9608041"), ("９６０－８０４１", "9608041"), ("9608041", "9608041"),
    ("960-804", None), ("", None),
])
def test_normalize_postal_code(raw, expected):
    assert n.normalize_postal_code(raw) == expected


@pytest.mark.parametrize("raw", [
    "福島県福島市大町3丁目4番5号",
    "福島市大町3-4-5",
    "福島市 大町 ３－４－５",
    "福島市大町三丁目四番五号",
    "福島市大町3丁目4-5",
    "福島市大町3丁目4番地5",
    "福島市大町3丁目4番地の5",
    "福島市大町3ー4ー5",
    "〒960-8041 福島県福島市大町3-4-5",
])
def test_normalize_address_writes_block_numbers_one_way(raw):
    assert n.normalize_address(raw) == "福島市大町3-4-5"


def test_normalize_address_keeps_kanji_numerals_of_place_names():
    assert n.normalize_address("宮城県仙台市青葉区一番町九丁目十二番二十一号") == "仙台市青葉区一番町9-12-21"
    assert n.normalize_address("埼玉県加須市大字騎西十二番地の三") == "加須市騎西12-3"


def test_normalize_address_keeps_building_and_folds_width():
    assert n.normalize_address("福島市大町３丁目４番５号　コーポ１０１") == "福島市大町3-4-5コーポ101"


@pytest.mark.parametrize(("raw", "expected"), [
    ("三", 3), ("十", 10), ("十五", 15), ("二十三", 23), ("一〇五", 105), ("百二", 102), ("", None), ("町", None),
])
def test_kanji_number(raw, expected):
    assert n.kanji_number(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("1970-01-01", "1970-01-01"),
    ("19700101", "1970-01-01"),
    ("1970/1/1", "1970-01-01"),
    ("１９７０年１月１日", "1970-01-01"),
    ("昭和45年1月1日", "1970-01-01"),
    ("S45.1.1", "1970-01-01"),
    ("平成元年2月3日", "1989-02-03"),
    ("令和2年4月1日", "2020-04-01"),
    ("2001-03-04T10:00:00+09:00", "2001-03-04"),
    ("1970-02", "1970-02"),
    ("1970", "1970"),
    ("1970-02-30", None),
    ("not a date", None),
])
def test_normalize_date(raw, expected):
    assert n.normalize_date(raw) == expected


def test_is_kana():
    assert n.is_kana("ヤマダ タロウ") and n.is_kana("やまだ") and n.is_kana("ｻﾄｰ")
    assert not n.is_kana("山田") and not n.is_kana("")
