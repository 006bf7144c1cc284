"""Normalization of Japanese patient demographics for record matching.

Implements the comparison keys that Patient/$match scoring and blocking use
(https://hl7.org/fhir/R4/patient-operation-match.html; IHE PDQm ITI-119): names in
kanji (JP Core ``iso21090-EN-representation`` = IDE) and kana (SYL), phone numbers,
postal codes, addresses and birth dates.

Every function is pure and total: bad input gives ``None`` or an empty string, never
an exception, because ingest must not fail on a badly typed telephone number.

Layers of name normalization, from strict to loose:

* :func:`normalize_kanji` - NFKC, hiragana->katakana, separators removed, old/variant
  kanji folded to one form (table :data:`KANJI_VARIANTS`). Equality means "same name".
* :func:`normalize_kana` - NFKC (half-width katakana becomes full width), hiragana ->
  katakana, separators removed, dash-like characters read as the long-vowel mark.
* :func:`kana_key` - also folds orthographic variants of the same pronunciation:
  small kana, long-vowel mark and vowel extension (オオノ/オーノ/オノ -> オノ),
  ヂ/ジ, ヅ/ズ, ヲ/オ, ヴ/ブ. Equality means "same reading, spelled differently".
* :func:`kana_loose` - also drops voicing marks (ダ->タ, パ->ハ); used only in fuzzy
  comparison, where a missing or extra dakuten is a common typing error.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from typing import Final

# --- generic text -------------------------------------------------------------------

# Variation selectors (standard and ideographic, e.g. 辻 with one or two dots, 葛 forms)
# only pick a glyph; facilities that cannot store them drop them, so we do too.
_VARIATION_SELECTORS: Final = re.compile("[\uFE00-\uFE0F\U000E0100-\U000E01EF]")
# Separators between family and given name, or inside foreign names written in kana.
_SEPARATORS: Final = re.compile("[\\s\u3000\u30FB\u00B7\u2022\uFF65=＝,、]+")
# Dash-like characters typed in place of the long-vowel mark or the address hyphen.
DASHES: Final = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uFE63\uFF0D\u30FC\uFF70\u301C\uFF5E~"


def nfkc(text: str | None) -> str:
    """NFKC-normalize (full/half width, compatibility ideographs) and drop variation selectors."""
    if not text:
        return ""
    return _VARIATION_SELECTORS.sub("", unicodedata.normalize("NFKC", text)).strip()


def remove_separators(text: str) -> str:
    """Remove ASCII and ideographic spaces, middle dots and similar name separators."""
    return _SEPARATORS.sub("", text)


# --- kana ---------------------------------------------------------------------------

_HIRA_TO_KATA: Final = {cp: cp + 0x60 for cp in range(0x3041, 0x3097)} | {0x309D: 0x30FD, 0x309E: 0x30FE}
_DASH_TO_CHOON: Final = str.maketrans({ch: "ー" for ch in DASHES})


def to_katakana(text: str) -> str:
    """Convert hiragana (and the hiragana iteration marks) to katakana."""
    return text.translate(_HIRA_TO_KATA)


def _expand_iteration_marks(text: str) -> str:
    """Spell out iteration marks: サヽキ -> ササキ, 佐々木 -> 佐佐木, ミスヾ -> ミスズ."""
    out: list[str] = []
    for ch in text:
        if ch in "ヽ々" and out:
            out.append(out[-1])
        elif ch == "ヾ" and out:
            out.append(unicodedata.normalize("NFC", out[-1] + "\u3099"))
        else:
            out.append(ch)
    return "".join(out)


def normalize_kana(text: str | None) -> str:
    """Canonical katakana spelling of a kana name: width, script, separators, dashes."""
    s = to_katakana(nfkc(text))
    s = remove_separators(s).translate(_DASH_TO_CHOON)
    return _expand_iteration_marks(s)


_SMALL_TO_LARGE: Final = str.maketrans("ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ")
# Pairs that modern pronunciation does not distinguish.
_SAME_SOUND: Final = str.maketrans("ヂヅヲヰヱヴ", "ジズオイエブ")

# Vowel of each katakana mora (after small kana are made large). Data, by row.
_ROWS: Final = (
    ("ア", "アカガサザタダナハバパマヤラワ"),
    ("イ", "イキギシジチヂニヒビピミリ"),
    ("ウ", "ウクグスズツヅヌフブプムユル"),
    ("エ", "エケゲセゼテデネヘベペメレ"),
    ("オ", "オコゴソゾトドノホボポモヨロヲ"),
)
_VOWEL: Final = {ch: vowel for vowel, chars in _ROWS for ch in chars}
# A vowel that only lengthens the mora before it: the same vowel, or ウ after an
# o-row mora (トウ = トー), or イ after an e-row mora (ケイ = ケー).
_EXTENDS: Final = {"ア": "ア", "イ": "イ", "ウ": "ウ", "エ": "エ", "オ": "オ"}


def _extends(prev_vowel: str | None, ch: str) -> bool:
    if prev_vowel is None or ch not in _EXTENDS:
        return False
    return ch == prev_vowel or (ch == "ウ" and prev_vowel == "オ") or (ch == "イ" and prev_vowel == "エ")


def kana_key(text: str | None) -> str:
    """Reading key: equal for spellings of the same pronunciation.

    オオノ, オーノ, オノ -> オノ; キョウコ, キヨウコ -> キヨコ; ユウコ, ユーコ -> ユコ.
    Deliberately lossy (大野 オオノ and 小野 オノ share a key): use it for blocking and
    for "same reading" evidence, never alone for a link.
    """
    s = normalize_kana(text).translate(_SMALL_TO_LARGE).translate(_SAME_SOUND)
    out: list[str] = []
    prev_vowel: str | None = None
    for ch in s:
        if ch == "ー":
            continue
        if _extends(prev_vowel, ch):
            continue
        out.append(ch)
        prev_vowel = _VOWEL.get(ch)
    return "".join(out)


def kana_loose(text: str | None) -> str:
    """:func:`kana_key` without voicing marks (ダ->タ, バ/パ->ハ), for fuzzy comparison only."""
    decomposed = unicodedata.normalize("NFD", kana_key(text))
    return unicodedata.normalize("NFC", decomposed.replace("\u3099", "").replace("\u309A", ""))


def is_kana(text: str) -> bool:
    """True if the text is written in kana only (ignoring separators and long-vowel marks)."""
    s = remove_separators(nfkc(text))
    return bool(s) and all("\u3041" <= ch <= "\u30FF" for ch in s)


# --- kanji --------------------------------------------------------------------------

# Old (kyujitai), variant (itaiji) and simplified forms that registries and facility
# systems use interchangeably in personal and place names. One line per character:
# the form we fold to first, then the variants. 斉/斎 and 辺/邊/邉 are distinct
# characters in the family register, but facilities mix them so often that matching
# treats them as one; the other fields (birth date, given name) keep people apart.
KANJI_VARIANTS: Final = """
高 髙
崎 﨑 嵜 碕
辺 邊 邉
斎 齋 齊 斉
沢 澤
浜 濱 濵
国 國 圀
広 廣
桜 櫻
徳 德
恵 惠
蔵 藏
竜 龍
真 眞
県 縣
島 嶋 嶌
富 冨
関 關
学 學
峰 峯
槙 槇
館 舘
渋 澁
滝 瀧
実 實
浅 淺
栄 榮
万 萬
弥 彌
与 與
寿 壽
来 來
円 圓
会 會
伝 傳
児 兒
曽 曾
増 增
寛 寬
黒 黑
荘 莊
条 條
瀬 瀨
静 靜
戸 戶
亜 亞
晋 晉
衛 衞
鉄 鐵
塩 鹽
礼 禮
野 埜
吉 𠮷
桧 檜
渕 淵
巌 巖
穂 穗
鶏 鷄
姫 姬
郷 鄕
将 將
芦 蘆
桑 桒
沖 冲
豊 豐
応 應
団 團
区 區
町 甼
"""

_KANJI_FOLD: Final = str.maketrans(
    {variant: line[0] for line in KANJI_VARIANTS.split("\n") if line for variant in line.split()[1:]}
)


def fold_kanji(text: str) -> str:
    """Fold old and variant kanji forms to the form listed first in :data:`KANJI_VARIANTS`."""
    return text.translate(_KANJI_FOLD)


def normalize_kanji(text: str | None) -> str:
    """Canonical form of a name written in kanji (JP Core IDE representation).

    Kana inside kanji names (さくら, 佐藤 ゆかり) are made katakana so that a facility that
    typed the official hiragana name in katakana still agrees.
    """
    s = remove_separators(to_katakana(nfkc(text)))
    return fold_kanji(_expand_iteration_marks(s))


# --- phone, postal code -------------------------------------------------------------

_MOBILE_PREFIXES: Final = ("070", "080", "090")


def normalize_phone(text: str | None) -> str | None:
    """Domestic digits of a Japanese phone number, or None if not a full number.

    ``+81-90-1234-5678``, ``+81 (0)3 1234 5678``, ``0081...`` and ``０９０－１２３４－５６７８``
    all become ``0`` + national significant number. Numbers without an area code
    (fewer than 10 digits) are not comparable across facilities and give None.
    """
    s = nfkc(text).replace("(0)", "")
    digits = re.sub(r"\D", "", s)
    if s.startswith("+") and digits.startswith("81"):
        digits = "0" + digits[2:]
    elif digits.startswith("0081"):
        digits = "0" + digits[4:]
    elif digits.startswith("01081"):  # international prefix dialled from a Japanese phone
        digits = "0" + digits[5:]
    if digits.startswith("0") and 10 <= len(digits) <= 11:
        return digits
    return None


def is_mobile(phone: str) -> bool:
    """True for a normalized mobile number (personal more often than a household landline)."""
    return len(phone) == 11 and phone.startswith(_MOBILE_PREFIXES)


def normalize_postal_code(text: str | None) -> str | None:
    """Seven-digit postal code (``〒960-8041`` -> ``9608041``) or None."""
    digits = re.sub(r"\D", "", nfkc(text))
    return digits if len(digits) == 7 else None


# --- address ------------------------------------------------------------------------

PREFECTURES: Final = (
    "北海道 青森県 岩手県 宮城県 秋田県 山形県 福島県 茨城県 栃木県 群馬県 埼玉県 千葉県 東京都 "
    "神奈川県 新潟県 富山県 石川県 福井県 山梨県 長野県 岐阜県 静岡県 愛知県 三重県 滋賀県 京都府 "
    "大阪府 兵庫県 奈良県 和歌山県 鳥取県 島根県 岡山県 広島県 山口県 徳島県 香川県 愛媛県 高知県 "
    "福岡県 佐賀県 長崎県 熊本県 大分県 宮崎県 鹿児島県 沖縄県"
).split()
_PREFECTURE_PREFIX: Final = re.compile("^(?:" + "|".join(PREFECTURES) + ")")
_KANJI_DIGITS: Final = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
                        "九": 9}
_KANJI_NUMERAL: Final = "[〇零一二三四五六七八九十百]+"
# 三丁目 and 十二番地 always; 四番, 五号 only inside a block number (after 丁目/番/digit/hyphen), so
# that place names such as 仙台市青葉区一番町 or 八幡町 keep their kanji.
_KANJI_CHOME: Final = re.compile(f"({_KANJI_NUMERAL})(?=丁目|番地)")
_KANJI_BLOCK: Final = re.compile(f"(?<=[目地番の\\d-])({_KANJI_NUMERAL})(?=番|号|の|-|$)")
_POSTAL_IN_TEXT: Final = re.compile(r"〒?\s*\d{3}-?\d{4}\s*")


def kanji_number(text: str) -> int | None:
    """Value of a kanji numeral below 1000: 三 -> 3, 十五 -> 15, 二十三 -> 23, 一〇五 -> 105."""
    if not text:
        return None
    if "十" not in text and "百" not in text:
        return int("".join(str(_KANJI_DIGITS[c]) for c in text)) if all(c in _KANJI_DIGITS for c in text) else None
    total, current = 0, 0
    for ch in text:
        if ch in _KANJI_DIGITS:
            current = _KANJI_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def _arabic(match: re.Match[str]) -> str:
    value = kanji_number(match.group(1))
    return match.group(1) if value is None else str(value)


def normalize_address(text: str | None) -> str:
    """Comparable address string.

    NFKC, variant kanji, spaces removed, the prefecture dropped (facilities differ in
    whether they write it), 大字 dropped, kanji numerals before 丁目/番/号 made Arabic,
    and 丁目/番地/番/号/の block numbers written as ``3-4-5``.
    ``福島県福島市大町 三丁目 4番地の5 コーポ101`` -> ``福島市大町3-4-5コーポ101``.
    """
    s = nfkc(text)
    if not s:
        return ""
    s = _POSTAL_IN_TEXT.sub("", s, count=1) if s.startswith("〒") else s
    s = fold_kanji(remove_separators(s)).casefold()
    s = s.translate({ord(ch): "-" for ch in DASHES if ch != "ー"})
    s = re.sub(r"(?<=\d)ー(?=\d)", "-", s)
    s = _KANJI_CHOME.sub(_arabic, s)
    s = _KANJI_BLOCK.sub(_arabic, s)
    s = re.sub(r"(\d+)丁目", r"\1-", s)
    s = re.sub(r"(\d+)番地?(?:の)?", r"\1-", s)
    s = re.sub(r"(\d+)号(?!室)", r"\1", s)
    s = re.sub(r"(\d+)の(?=\d)", r"\1-", s)
    s = re.sub(r"-{2,}", "-", s).strip("-")
    s = re.sub(r"-(?=\D)", "", s)
    s = s.replace("大字", "")
    return _PREFECTURE_PREFIX.sub("", s)


# --- dates --------------------------------------------------------------------------

_ERAS: Final = {"明治": 1868, "大正": 1912, "昭和": 1926, "平成": 1989, "令和": 2019,
                "M": 1868, "T": 1912, "S": 1926, "H": 1989, "R": 2019}
_ERA_DATE: Final = re.compile(r"^(明治|大正|昭和|平成|令和|[MTSHR])\.?(元|\d{1,2})[年./-](\d{1,2})[月./-](\d{1,2})日?$")
_WESTERN_DATE: Final = re.compile(r"^(\d{4})(?:[-/.年]?(\d{1,2})(?:[-/.月]?(\d{1,2})日?)?)?$")


def normalize_date(text: str | None) -> str | None:
    """ISO 8601 date (``YYYY-MM-DD``, or ``YYYY-MM`` / ``YYYY`` if partial) or None.

    Accepts FHIR dates and dateTimes, ``1970/1/1``, ``19700101``, ``1970年1月1日`` and
    Japanese era dates (``昭和45年1月1日``, ``S45.1.1``, ``平成元年2月3日``).
    """
    s = remove_separators(nfkc(text)).upper()
    if not s:
        return None
    era = _ERA_DATE.match(s)
    if era:
        year = _ERAS[era.group(1)] + (1 if era.group(2) == "元" else int(era.group(2))) - 1
        parts: tuple[str | None, ...] = (str(year), era.group(3), era.group(4))
    else:
        day_part = s.split("T")[0]
        western = _WESTERN_DATE.match(day_part)
        if day_part.isdigit() and len(day_part) == 8:
            parts = (day_part[:4], day_part[4:6], day_part[6:])
        elif western:
            parts = western.groups()
        else:
            return None
    year_s, month_s, day_s = parts
    try:
        if day_s is not None:
            return _dt.date(int(year_s), int(month_s), int(day_s)).isoformat()  # type: ignore[arg-type]
        if month_s is not None:
            return _dt.date(int(year_s), int(month_s), 1).isoformat()[:7]  # type: ignore[arg-type]
        return f"{int(year_s):04d}"  # type: ignore[arg-type]
    except ValueError:
        return None
