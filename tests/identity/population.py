"""Synthetic Japanese population with known truth, for testing Patient/$match.

Generates people in households (couples, children, twins, elderly), then the JP Core
Patient records that facilities would hold for them, with the variants that make
matching hard in a Japanese region: kana typos, half/full width, hiragana vs katakana,
spaces, old/new kanji forms, married-name changes, moved addresses, missing fields,
twins sharing birth date, address, phone and insurance policy, and family phones.

Spec context: https://hl7.org/fhir/R4/patient-operation-match.html, IHE PDQm ITI-119;
JP Core JP_Patient names (iso21090-EN-representation IDE/SYL), JP-CLINS insured-person
id. Deterministic for a seed. Postal codes and towns are realistic in shape and region
but were not checked against the Japan Post table. The name tables are written here,
independently of the normalization tables under test.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from typing import Any

SEED = 20240601
REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
FACILITY_PREFIX = "urn:oid:1.2.392.100495.20.3.51.1"
MEMBER_ID_SYSTEM = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"

# (kanji, kana, relative frequency, old/variant spellings seen in facility systems)
FAMILY_NAMES: list[tuple[str, str, int, tuple[str, ...]]] = [
    ("佐藤", "サトウ", 30, ()), ("鈴木", "スズキ", 28, ()), ("高橋", "タカハシ", 22, ("髙橋",)),
    ("田中", "タナカ", 20, ()), ("伊藤", "イトウ", 18, ()), ("渡辺", "ワタナベ", 18, ("渡邊", "渡邉")),
    ("山本", "ヤマモト", 17, ()), ("中村", "ナカムラ", 17, ()), ("小林", "コバヤシ", 16, ()),
    ("加藤", "カトウ", 15, ()), ("吉田", "ヨシダ", 14, ("𠮷田",)), ("山田", "ヤマダ", 13, ()),
    ("佐々木", "ササキ", 12, ("佐佐木",)), ("山口", "ヤマグチ", 11, ()), ("松本", "マツモト", 11, ()),
    ("井上", "イノウエ", 10, ()), ("木村", "キムラ", 10, ()), ("林", "ハヤシ", 9, ()),
    ("斎藤", "サイトウ", 9, ("齋藤", "齊藤")), ("清水", "シミズ", 9, ()), ("山崎", "ヤマザキ", 8, ("山﨑", "山嵜")),
    ("森", "モリ", 8, ()), ("池田", "イケダ", 8, ()), ("橋本", "ハシモト", 8, ()), ("阿部", "アベ", 8, ()),
    ("石川", "イシカワ", 7, ()), ("山下", "ヤマシタ", 7, ()), ("中島", "ナカジマ", 7, ("中嶋",)),
    ("石井", "イシイ", 7, ()), ("小川", "オガワ", 7, ()), ("前田", "マエダ", 6, ()), ("岡田", "オカダ", 6, ()),
    ("長谷川", "ハセガワ", 6, ()), ("藤田", "フジタ", 6, ()), ("後藤", "ゴトウ", 6, ()), ("近藤", "コンドウ", 6, ()),
    ("村上", "ムラカミ", 6, ()), ("遠藤", "エンドウ", 8, ()), ("青木", "アオキ", 5, ()), ("坂本", "サカモト", 5, ()),
    ("斉藤", "サイトウ", 5, ()), ("福田", "フクダ", 5, ()), ("太田", "オオタ", 5, ()), ("西村", "ニシムラ", 5, ()),
    ("藤井", "フジイ", 5, ()), ("金子", "カネコ", 5, ()), ("岡本", "オカモト", 5, ()), ("藤原", "フジワラ", 5, ()),
    ("中野", "ナカノ", 5, ()), ("三浦", "ミウラ", 5, ()), ("原田", "ハラダ", 5, ()), ("中川", "ナカガワ", 5, ()),
    ("松田", "マツダ", 4, ()), ("竹内", "タケウチ", 4, ()), ("小野", "オノ", 4, ()), ("田村", "タムラ", 4, ()),
    ("中山", "ナカヤマ", 4, ()), ("和田", "ワダ", 4, ()), ("石田", "イシダ", 4, ()), ("森田", "モリタ", 4, ()),
    ("上田", "ウエダ", 4, ()), ("原", "ハラ", 4, ()), ("内田", "ウチダ", 4, ()), ("柴田", "シバタ", 4, ()),
    ("酒井", "サカイ", 4, ()), ("工藤", "クドウ", 4, ()), ("横山", "ヨコヤマ", 4, ()), ("宮崎", "ミヤザキ", 4, ("宮﨑",)),
    ("宮本", "ミヤモト", 4, ()), ("大野", "オオノ", 4, ()), ("高木", "タカギ", 4, ("髙木",)), ("安藤", "アンドウ", 4, ()),
    ("谷口", "タニグチ", 3, ()), ("丸山", "マルヤマ", 3, ()), ("今井", "イマイ", 3, ()), ("高田", "タカダ", 3, ("髙田",)),
    ("河野", "コウノ", 3, ()), ("藤本", "フジモト", 3, ()), ("村田", "ムラタ", 3, ()), ("武田", "タケダ", 3, ()),
    ("上野", "ウエノ", 3, ()), ("杉山", "スギヤマ", 3, ()), ("増田", "マスダ", 3, ()), ("小山", "コヤマ", 3, ()),
    ("大塚", "オオツカ", 3, ()), ("平野", "ヒラノ", 3, ()), ("菅原", "スガワラ", 3, ()), ("久保", "クボ", 3, ()),
    ("松井", "マツイ", 3, ()), ("千葉", "チバ", 3, ()), ("岩崎", "イワサキ", 3, ("岩﨑",)), ("桜井", "サクライ", 3, ("櫻井",)),
    ("木下", "キノシタ", 3, ()), ("野口", "ノグチ", 3, ()), ("松尾", "マツオ", 3, ()), ("菊地", "キクチ", 4, ()),
    ("野村", "ノムラ", 3, ()), ("新井", "アライ", 4, ()), ("渡部", "ワタナベ", 5, ()), ("佐野", "サノ", 3, ()),
    ("大西", "オオニシ", 3, ()), ("杉本", "スギモト", 3, ()), ("浜田", "ハマダ", 3, ("濱田", "濵田")),
    ("菅野", "カンノ", 5, ()), ("市川", "イチカワ", 3, ()), ("北村", "キタムラ", 3, ()), ("関", "セキ", 3, ("關",)),
    ("高野", "タカノ", 3, ("髙野",)), ("大橋", "オオハシ", 3, ()), ("吉川", "ヨシカワ", 3, ()),
    ("広瀬", "ヒロセ", 3, ("廣瀬",)), ("国分", "コクブン", 2, ("國分",)), ("島田", "シマダ", 3, ("嶋田",)),
    ("沢田", "サワダ", 3, ("澤田",)), ("富田", "トミタ", 2, ("冨田",)), ("真田", "サナダ", 2, ("眞田",)),
    ("徳永", "トクナガ", 2, ("德永",)), ("黒田", "クロダ", 2, ("黑田",)), ("滝沢", "タキザワ", 2, ("瀧澤", "滝澤")),
    ("根本", "ネモト", 3, ()), ("星", "ホシ", 3, ()), ("二瓶", "ニヘイ", 2, ()), ("猪狩", "イガリ", 2, ()),
    ("草野", "クサノ", 2, ()), ("大内", "オオウチ", 2, ()), ("須藤", "スドウ", 2, ()), ("宗像", "ムナカタ", 2, ()),
    ("坂内", "バンナイ", 2, ()), ("小松", "コマツ", 2, ()), ("荒井", "アライ", 2, ()), ("関根", "セキネ", 3, ("關根",)),
    ("田島", "タジマ", 2, ("田嶋",)), ("大久保", "オオクボ", 2, ()), ("石塚", "イシヅカ", 2, ()), ("飯田", "イイダ", 2, ()),
    ("井田", "イダ", 1, ()), ("大島", "オオシマ", 2, ("大嶋",)), ("小島", "コジマ", 2, ("小嶋",)),
]

# (kanji, kana, variants) by sex and generation (born before / from 1990).
MALE_CLASSIC = [
    ("太郎", "タロウ"), ("一郎", "イチロウ"), ("健一", "ケンイチ"), ("誠", "マコト"), ("浩", "ヒロシ"), ("博", "ヒロシ"),
    ("弘", "ヒロシ"), ("隆", "タカシ"), ("茂", "シゲル"), ("清", "キヨシ"), ("大輔", "ダイスケ"), ("直樹", "ナオキ"),
    ("和也", "カズヤ"), ("達也", "タツヤ"), ("亮", "リョウ"), ("聡", "サトシ"), ("修", "オサム"), ("勇", "イサム"),
    ("実", "ミノル"), ("勝", "マサル"), ("進", "ススム"), ("正", "タダシ"), ("秀樹", "ヒデキ"), ("哲也", "テツヤ"),
    ("雄一", "ユウイチ"), ("恵介", "ケイスケ"), ("圭介", "ケイスケ"), ("康介", "コウスケ"), ("浩二", "コウジ"),
    ("修一", "シュウイチ"), ("智也", "トモヤ"), ("和夫", "カズオ"), ("昭", "アキラ"), ("武", "タケシ"), ("豊", "ユタカ"),
    ("稔", "ミノル"), ("義男", "ヨシオ"), ("光男", "ミツオ"), ("正男", "マサオ"), ("幸雄", "ユキオ"), ("俊介", "シュンスケ"),
    ("健二", "ケンジ"), ("賢治", "ケンジ"), ("英樹", "ヒデキ"), ("竜也", "タツヤ"), ("真一", "シンイチ"), ("広志", "ヒロシ"),
    ("浩之", "ヒロユキ"), ("淳", "ジュン"), ("学", "マナブ"), ("徹", "トオル"), ("剛", "ツヨシ"), ("栄一", "エイイチ"),
    ("寿夫", "ヒサオ"), ("大樹", "ダイキ"), ("翼", "ツバサ"), ("勝利", "カツトシ"), ("洋平", "ヨウヘイ"),
]
MALE_MODERN = [
    ("大翔", "ヒロト"), ("蓮", "レン"), ("悠真", "ユウマ"), ("陽翔", "ハルト"), ("湊", "ミナト"), ("翔", "ショウ"),
    ("陸", "リク"), ("颯太", "ソウタ"), ("蒼", "アオイ"), ("樹", "イツキ"), ("龍之介", "リュウノスケ"), ("優太", "ユウタ"),
    ("優斗", "ユウト"), ("悠斗", "ユウト"), ("悠人", "ユウト"), ("大和", "ヤマト"), ("陽太", "ヨウタ"), ("蒼空", "ソラ"),
    ("朝陽", "アサヒ"), ("律", "リツ"), ("新", "アラタ"), ("海斗", "カイト"), ("拓海", "タクミ"), ("颯", "ハヤテ"),
    ("結翔", "ユイト"), ("悠", "ユウ"), ("奏太", "カナタ"), ("翔太", "ショウタ"), ("拓也", "タクヤ"), ("健太", "ケンタ"),
    ("大輝", "ダイキ"), ("駿", "シュン"), ("隼人", "ハヤト"), ("涼太", "リョウタ"), ("航", "ワタル"), ("瑛太", "エイタ"),
]
FEMALE_CLASSIC = [
    ("花子", "ハナコ"), ("幸子", "サチコ"), ("恵子", "ケイコ"), ("洋子", "ヨウコ"), ("和子", "カズコ"), ("節子", "セツコ"),
    ("京子", "キョウコ"), ("裕子", "ユウコ"), ("祐子", "ユウコ"), ("優子", "ユウコ"), ("美穂", "ミホ"), ("直美", "ナオミ"),
    ("由美", "ユミ"), ("真由美", "マユミ"), ("久美子", "クミコ"), ("恵美", "エミ"), ("陽子", "ヨウコ"), ("智子", "トモコ"),
    ("明美", "アケミ"), ("美香", "ミカ"), ("香織", "カオリ"), ("沙織", "サオリ"), ("静香", "シズカ"), ("美紀", "ミキ"),
    ("由紀", "ユキ"), ("早苗", "サナエ"), ("友美", "トモミ"), ("純子", "ジュンコ"), ("順子", "ジュンコ"), ("多恵子", "タエコ"),
    ("澄子", "スミコ"), ("キヨ", "キヨ"), ("ハル", "ハル"), ("ひろみ", "ヒロミ"), ("典子", "ノリコ"), ("悦子", "エツコ"),
    ("弘子", "ヒロコ"), ("千代", "チヨ"), ("美智子", "ミチコ"), ("良子", "ヨシコ"), ("文子", "フミコ"), ("信子", "ノブコ"),
    ("照子", "テルコ"), ("恭子", "キョウコ"), ("由美子", "ユミコ"), ("真理子", "マリコ"), ("麻美", "アサミ"), ("瞳", "ヒトミ"),
    ("愛", "アイ"), ("舞", "マイ"), ("麻衣", "マイ"), ("彩", "アヤ"), ("千尋", "チヒロ"), ("桜子", "サクラコ"),
]
FEMALE_MODERN = [
    ("陽菜", "ヒナ"), ("結衣", "ユイ"), ("美咲", "ミサキ"), ("葵", "アオイ"), ("凛", "リン"), ("結菜", "ユイナ"),
    ("芽依", "メイ"), ("紬", "ツムギ"), ("さくら", "サクラ"), ("桜", "サクラ"), ("優奈", "ユウナ"), ("真央", "マオ"),
    ("奈々", "ナナ"), ("彩花", "アヤカ"), ("七海", "ナナミ"), ("心春", "コハル"), ("陽葵", "ヒマリ"), ("莉子", "リコ"),
    ("美月", "ミヅキ"), ("咲良", "サクラ"), ("杏", "アン"), ("花音", "カノン"), ("楓", "カエデ"), ("愛莉", "アイリ"),
    ("琴音", "コトネ"), ("結愛", "ユア"), ("澪", "ミオ"), ("乃愛", "ノア"), ("彩乃", "アヤノ"), ("遥", "ハルカ"),
]
# Old/variant forms of characters in the given-name tables, as some facilities store them.
GIVEN_VARIANTS = {"恵": "惠", "豊": "豐", "竜": "龍", "真": "眞", "広": "廣", "学": "學", "栄": "榮", "寿": "壽",
                  "静": "靜", "桜": "櫻"}
# Twins are often given alike names; (name, kana) pairs per sex.
TWIN_NAMES = {
    "male": [(("優太", "ユウタ"), ("優斗", "ユウト")), (("翔太", "ショウタ"), ("翔平", "ショウヘイ")),
             (("大翔", "ヒロト"), ("大和", "ヤマト")), (("陽太", "ヨウタ"), ("陽翔", "ハルト")),
             (("健太", "ケンタ"), ("健斗", "ケント")), (("拓海", "タクミ"), ("拓真", "タクマ"))],
    "female": [(("結衣", "ユイ"), ("結菜", "ユイナ")), (("美咲", "ミサキ"), ("美羽", "ミウ")),
               (("彩花", "アヤカ"), ("彩乃", "アヤノ")), (("陽菜", "ヒナ"), ("陽葵", "ヒマリ")),
               (("愛", "アイ"), ("舞", "マイ")), (("真央", "マオ"), ("真子", "マコ"))],
}

# (prefecture, city, town, postal code, area code); Fukushima, the Tone area, Gunma, Tokyo.
TOWNS = [
    ("福島県", "福島市", "大町", "9608041", "024"), ("福島県", "福島市", "栄町", "9608031", "024"),
    ("福島県", "福島市", "野田町", "9608055", "024"), ("福島県", "福島市", "渡利", "9608141", "024"),
    ("福島県", "福島市", "南矢野目", "9600112", "024"), ("福島県", "郡山市", "駅前", "9638002", "024"),
    ("福島県", "郡山市", "堂前町", "9638005", "024"), ("福島県", "郡山市", "富田町", "9638041", "024"),
    ("福島県", "いわき市", "平", "9708026", "0246"), ("福島県", "いわき市", "小名浜", "9718101", "0246"),
    ("福島県", "会津若松市", "栄町", "9650871", "0242"), ("福島県", "会津若松市", "門田町", "9650842", "0242"),
    ("福島県", "須賀川市", "八幡町", "9620844", "0248"), ("福島県", "伊達市", "保原町", "9600611", "024"),
    ("福島県", "白河市", "郭内", "9610074", "0248"), ("埼玉県", "加須市", "中央", "3470055", "0480"),
    ("埼玉県", "加須市", "騎西", "3470105", "0480"), ("埼玉県", "羽生市", "南", "3480058", "048"),
    ("埼玉県", "久喜市", "久喜中央", "3460003", "0480"), ("埼玉県", "行田市", "本丸", "3610052", "048"),
    ("埼玉県", "幸手市", "中", "3400155", "0480"), ("埼玉県", "蓮田市", "本町", "3490124", "048"),
    ("埼玉県", "白岡市", "千駄野", "3490218", "0480"), ("埼玉県", "さいたま市浦和区", "高砂", "3300063", "048"),
    ("群馬県", "前橋市", "大手町", "3710026", "027"), ("群馬県", "高崎市", "高松町", "3700829", "027"),
    ("群馬県", "太田市", "浜町", "3730853", "0276"), ("群馬県", "伊勢崎市", "今泉町", "3720031", "0270"),
    ("群馬県", "桐生市", "織姫町", "3760031", "0277"), ("東京都", "新宿区", "西新宿", "1600023", "03"),
    ("東京都", "世田谷区", "太子堂", "1540004", "03"), ("宮城県", "仙台市青葉区", "一番町", "9800811", "022"),
]
BUILDINGS = ["コーポ", "ハイツ", "メゾン", "グリーンハイツ", "サンシャイン", "パレス"]


@dataclass
class Address:
    town: tuple[str, str, str, str, str]
    chome: int
    ban: int
    go: int
    building: str | None = None

    @property
    def postal(self) -> str:
        return self.town[3]


@dataclass
class Household:
    address: Address
    landline: str | None
    insurance: tuple[str, str, str] | None  # (insurer, symbol, number)
    next_branch: int = 0


@dataclass
class Person:
    person_id: str
    family: tuple[str, str, tuple[str, ...]]
    given: tuple[str, str]
    gender: str
    birth_date: str
    household: Household
    mobile: str | None
    contact_phone: str | None = None  # a parent's mobile for children
    branch: str | None = None
    maiden: tuple[str, str, tuple[str, ...]] | None = None
    previous_address: Address | None = None
    previous_landline: str | None = None
    previous_insurance: str | None = None
    twin_of: str | None = None
    tags: set[str] = field(default_factory=set)

    @property
    def member_id(self) -> str | None:
        if not self.household.insurance:
            return None
        insurer, symbol, number = self.household.insurance
        return f"{insurer}:{symbol}:{number}:{self.branch}"


@dataclass
class Record:
    record_id: str
    person_id: str
    resource: dict[str, Any]
    variants: tuple[str, ...]


# --- people -------------------------------------------------------------------------


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.family_weights = [w for _, _, w, _ in FAMILY_NAMES]
        self.used_phones: set[str] = set()
        self.people: list[Person] = []

    def family_name(self, exclude: str | None = None) -> tuple[str, str, tuple[str, ...]]:
        while True:
            kanji, kana, _, variants = self.rng.choices(FAMILY_NAMES, self.family_weights)[0]
            if kanji != exclude:
                return kanji, kana, variants

    def given_name(self, gender: str, year: int) -> tuple[str, str]:
        modern = year >= 1990
        table = (MALE_MODERN if modern else MALE_CLASSIC) if gender == "male" else (
            FEMALE_MODERN if modern else FEMALE_CLASSIC)
        return self.rng.choice(table)

    def birth_date(self, year: int) -> str:
        month = self.rng.randint(1, 12)
        day = self.rng.randint(1, 28 if month == 2 else 30)
        return f"{year:04d}-{month:02d}-{day:02d}"

    def phone(self, prefix: str) -> str:
        while True:
            number = prefix + "".join(str(self.rng.randint(0, 9)) for _ in range(10 - len(prefix)))
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def mobile(self) -> str:
        while True:
            number = self.rng.choice(("090", "080", "070")) + "".join(str(self.rng.randint(0, 9)) for _ in range(8))
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def address(self, town: tuple[str, str, str, str, str] | None = None) -> Address:
        rng = self.rng
        building = None
        if rng.random() < 0.25:
            building = f"{rng.choice(BUILDINGS)}{rng.randint(1, 3)}{rng.randint(0, 3)}{rng.randint(1, 9)}"
        return Address(town or rng.choice(TOWNS), rng.randint(1, 9), rng.randint(1, 30), rng.randint(1, 25), building)

    def insurance(self, elderly: bool) -> tuple[str, str, str]:
        rng = self.rng
        if elderly:  # 後期高齢者医療: insurer 39xxxxxx, no symbol, own number
            return (f"39{rng.randint(70000, 139999):06d}", "", f"{rng.randint(1, 99999999):08d}")
        kind = rng.random()
        if kind < 0.35:  # National Health Insurance, 6-digit insurer
            return (f"{rng.randint(70000, 139999):06d}", f"{rng.choice('アイウエオカキ')}{rng.randint(1, 99)}",
                    str(rng.randint(1, 999999)))
        if kind < 0.7:  # 協会けんぽ
            return (f"01{rng.choice(('07', '11', '10', '13'))}{rng.randint(1, 9999):04d}", str(rng.randint(1, 9999999)),
                    str(rng.randint(1, 99999)))
        return (f"06{rng.randint(1, 999999):06d}", f"{rng.randint(1, 99)}-{rng.randint(1, 999)}", str(rng.randint(1, 9999)))

    def household(self, elderly: bool = False) -> Household:
        address = self.address()
        landline = self.phone(address.town[4]) if self.rng.random() < (0.8 if elderly else 0.5) else None
        return Household(address, landline, self.insurance(elderly) if self.rng.random() < 0.97 else None)

    def person(self, family, given, gender, birth_date, household, mobile=True) -> Person:
        p = Person(f"P{len(self.people):06d}", family, given, gender, birth_date, household,
                   self.mobile() if mobile else None)
        if household.insurance:
            p.branch = f"{household.next_branch:02d}"
            household.next_branch += 1
        if self.rng.random() < 0.3:
            p.previous_address = self.address()
            p.previous_landline = self.phone(p.previous_address.town[4]) if self.rng.random() < 0.4 else None
        if self.rng.random() < 0.15:
            ins = self.insurance(False)
            p.previous_insurance = f"{ins[0]}:{ins[1]}:{ins[2]}:00"
        self.people.append(p)
        return p

    def family_household(self) -> None:
        rng = self.rng
        hh = self.household()
        family = self.family_name()
        husband_year = rng.randint(1950, 1998)
        self.person(family, self.given_name("male", husband_year), "male", self.birth_date(husband_year), hh)
        wife_year = max(1950, min(2000, husband_year + rng.randint(-4, 3)))
        wife = self.person(family, self.given_name("female", wife_year), "female", self.birth_date(wife_year), hh)
        wife.maiden = self.family_name(exclude=family[0])
        wife.tags.add("married")
        first_child = husband_year + rng.randint(24, 38)
        if first_child > 2023:
            return
        children = rng.choices((0, 1, 2, 3), (2, 3, 4, 2))[0]
        twins = rng.random() < 0.12
        year = first_child
        for i in range(children):
            if year > 2023:
                break
            if twins and i == 0:
                self.twins(family, hh, wife, year)
            else:
                gender = rng.choice(("male", "female"))
                child = self.person(family, self.given_name(gender, year), gender, self.birth_date(year), hh,
                                    mobile=year < 2008 and rng.random() < 0.7)
                child.contact_phone = wife.mobile
            year += rng.randint(1, 5)

    def twins(self, family, hh: Household, mother: Person, year: int) -> None:
        rng = self.rng
        birth = self.birth_date(year)
        if rng.random() < 0.67:
            gender = rng.choice(("male", "female"))
            genders = (gender, gender)
            if rng.random() < 0.5:
                names = rng.choice(TWIN_NAMES[gender])
            else:
                first = self.given_name(gender, year)
                second = first
                while second[1] == first[1]:
                    second = self.given_name(gender, year)
                names = (first, second)
        else:
            genders = ("male", "female")
            names = (self.given_name("male", year), self.given_name("female", year))
        mobile = year < 2008 and rng.random() < 0.5
        a = self.person(family, names[0], genders[0], birth, hh, mobile)
        b = self.person(family, names[1], genders[1], birth, hh, mobile)
        for child, other in ((a, b), (b, a)):
            child.twin_of = other.person_id
            child.contact_phone = mother.mobile
            child.previous_address = None
            child.tags.add("twin")

    def elderly_household(self) -> None:
        rng = self.rng
        hh = self.household(elderly=True)
        family = self.family_name()
        year = rng.randint(1925, 1948)
        gender = rng.choice(("male", "female"))
        first = self.person(family, self.given_name(gender, year), gender, self.birth_date(year), hh,
                            mobile=rng.random() < 0.5)
        if rng.random() < 0.5:
            other = "female" if gender == "male" else "male"
            spouse_year = min(1948, year + rng.randint(-3, 3))
            # Late-stage elderly insurance is individual: same home, own insured number.
            own = Household(hh.address, hh.landline, self.insurance(elderly=True))
            spouse = self.person(family, self.given_name(other, spouse_year), other, self.birth_date(spouse_year), own,
                                 mobile=rng.random() < 0.4)
            wife = spouse if other == "female" else first
            wife.maiden = self.family_name(exclude=family[0])
            wife.tags.add("married")

    def single_household(self) -> None:
        year = self.rng.randint(1960, 2003)
        gender = self.rng.choice(("male", "female"))
        self.person(self.family_name(), self.given_name(gender, year), gender, self.birth_date(year), self.household())


def generate_people(n_people: int, seed: int = SEED) -> list[Person]:
    """About ``n_people`` people in households; deterministic for a seed."""
    gen = _Gen(seed)
    while len(gen.people) < n_people:
        kind = gen.rng.random()
        if kind < 0.55:
            gen.family_household()
        elif kind < 0.8:
            gen.elderly_household()
        else:
            gen.single_household()
    return gen.people[:n_people]


# --- rendering variants -------------------------------------------------------------

_HALF = {unicodedata.normalize("NFKC", chr(cp)): chr(cp) for cp in range(0xFF66, 0xFF9E)}
_VOICED_TOGGLE = {}
for _base in "カキクケコサシスセソタチツテトハヒフヘホ":
    _voiced = chr(ord(_base) + 1)
    _VOICED_TOGGLE[_base], _VOICED_TOGGLE[_voiced] = _voiced, _base
_SMALL_TOGGLE = dict(zip("ャュョッァィゥェォヤユヨツアイウエオ", "ヤユヨツアイウエオャュョッァィゥェォ", strict=True))
_KANJI_NUM = "〇一二三四五六七八九"


def half_width(kana: str) -> str:
    out = []
    for ch in kana:
        base = unicodedata.normalize("NFD", ch)
        if base[0] in _HALF:
            out.append(_HALF[base[0]] + ("ﾞ" if "\u3099" in base else "ﾟ" if "\u309A" in base else ""))
        else:
            out.append(ch)
    return "".join(out)


def hiragana(kana: str) -> str:
    return "".join(chr(ord(ch) - 0x60) if "ァ" <= ch <= "ヶ" else ch for ch in kana)


def full_width_digits(text: str) -> str:
    return text.translate(str.maketrans("0123456789-", "０１２３４５６７８９－"))


def kanji_numeral(n: int) -> str:
    if n < 10:
        return _KANJI_NUM[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _KANJI_NUM[tens]) + "十" + (_KANJI_NUM[ones] if ones else "")


def kana_typo(kana: str, rng: random.Random) -> str:
    """One realistic typing error: voicing mark, small/large kana, long vowel, a wrong
    kana in the same row, or a dropped kana."""
    positions = list(range(len(kana)))
    rng.shuffle(positions)
    kind = rng.random()
    for i in positions:
        ch = kana[i]
        if kind < 0.3 and ch in _VOICED_TOGGLE:
            return kana[:i] + _VOICED_TOGGLE[ch] + kana[i + 1:]
        if kind < 0.45 and ch in _SMALL_TOGGLE:
            return kana[:i] + _SMALL_TOGGLE[ch] + kana[i + 1:]
        if kind < 0.6 and ch in "ウオイ" and i > 0:
            return kana[:i] + "ー" + kana[i + 1:]
        if kind < 0.85 and "ア" <= ch <= "ン" and i > 0:
            row = "アイウエオ" if ch in "アイウエオ" else None
            replacement = rng.choice(row or "カキクケコサシスセソタチツテトナニヌネノマミムメモラリルレロ")
            if replacement != ch:
                return kana[:i] + replacement + kana[i + 1:]
        if len(kana) >= 4 and i > 0:
            return kana[:i] + kana[i + 1:]
    return kana + "ー" if not kana.endswith("ー") else kana[:-1]


def _old_form(kanji: str, variants: tuple[str, ...], rng: random.Random) -> str:
    return rng.choice(variants) if variants else kanji


def render_address(addr: Address, rng: random.Random) -> tuple[str, list[str]]:
    pref, city, town, _, _ = addr.town
    style = rng.random()
    notes = []
    if style < 0.3:
        block = f"{addr.chome}丁目{addr.ban}番{addr.go}号"
    elif style < 0.6:
        block = f"{addr.chome}-{addr.ban}-{addr.go}"
    elif style < 0.7:
        block = f"{kanji_numeral(addr.chome)}丁目{kanji_numeral(addr.ban)}番{kanji_numeral(addr.go)}号"
        notes.append("kanji-numerals")
    elif style < 0.85:
        block = f"{addr.chome}丁目{addr.ban}-{addr.go}"
    else:
        block = f"{addr.chome}丁目{addr.ban}番地{addr.go}"
    text = (pref if rng.random() < 0.6 else "") + city + (" " if rng.random() < 0.2 else "") + town + block
    if addr.building and rng.random() < 0.85:
        text += (" " if rng.random() < 0.5 else "") + addr.building + ("号室" if rng.random() < 0.3 else "")
    if rng.random() < 0.15:
        text = full_width_digits(text)
        notes.append("width")
    return text, notes


def render_phone(phone: str, rng: random.Random) -> str:
    style = rng.random()
    if phone.startswith(("090", "080", "070")):
        parts = (phone[:3], phone[3:7], phone[7:])
    elif phone.startswith("03"):
        parts = (phone[:2], phone[2:6], phone[6:])
    elif phone.startswith(("0246", "0242", "0248", "0480", "0276", "0270", "0277")):
        parts = (phone[:4], phone[4:6], phone[6:])
    else:
        parts = (phone[:3], phone[3:6], phone[6:])
    if style < 0.4:
        return "-".join(parts)
    if style < 0.6:
        return phone
    if style < 0.7:
        return "+81-" + "-".join((parts[0][1:], *parts[1:]))
    if style < 0.85:
        return full_width_digits("-".join(parts))
    return f"({parts[0]}){parts[1]}-{parts[2]}"


def _name_entry(rep: str, family: str, given: str, rng: random.Random, sep: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"extension": [{"url": REPRESENTATION, "valueCode": rep}], "use": "official"}
    shape = rng.random()
    if shape < 0.8:
        entry.update(text=family + sep + given, family=family, given=[given])
    elif shape < 0.9:
        entry["text"] = family + sep + given
    else:
        entry.update(family=family, given=[given])
    return entry


class RecordFactory:
    """Facility records of people, with variants; truth stays in ``Record.person_id``."""

    def __init__(self, seed: int = SEED, facilities: int = 40) -> None:
        self.rng = random.Random(seed + 1)
        self.facilities = [f"{self.rng.choice(('07', '11', '10', '13'))}{self.rng.choice('134')}"
                           f"{self.rng.randint(0, 9999999):07d}" for _ in range(facilities)]
        self.next_number = {code: 1000 for code in self.facilities}
        self.count = 0

    def record(self, p: Person, facility: str, clean: bool = False) -> Record:
        rng = self.rng
        variants: list[str] = []

        def chance(p_: float, tag: str) -> bool:
            hit = not clean and rng.random() < p_
            if hit:
                variants.append(tag)
            return hit

        family = p.family
        maiden_record = p.maiden is not None and chance(0.3, "married-name")
        if maiden_record:
            family = p.maiden  # type: ignore[assignment]
        family_kanji, family_kana, family_variants = family
        given_kanji, given_kana = p.given
        if family_variants and chance(0.35, "old-kanji"):
            family_kanji = _old_form(family_kanji, family_variants, rng)
        if any(c in GIVEN_VARIANTS for c in given_kanji) and chance(0.25, "old-kanji-given"):
            given_kanji = "".join(GIVEN_VARIANTS.get(c, c) for c in given_kanji)
        if chance(0.08, "kana-typo"):
            if rng.random() < 0.5:
                family_kana = kana_typo(family_kana, rng)
            else:
                given_kana = kana_typo(given_kana, rng)
        if ("オオ" in family_kana or "ウ" in family_kana[1:]) and chance(0.3, "long-vowel"):
            family_kana = family_kana[0] + family_kana[1:].replace("オオ", "オー").replace("ウ", "ー", 1)
        if chance(0.12, "hiragana"):
            family_kana, given_kana = hiragana(family_kana), hiragana(given_kana)
        elif chance(0.1, "half-width"):
            family_kana, given_kana = half_width(family_kana), half_width(given_kana)
        sep = rng.choice(("\u3000", " ", "")) if not clean else "\u3000"
        names = []
        drop = rng.random() if not clean else 1.0
        if drop >= 0.04:
            names.append(_name_entry("IDE", family_kanji, given_kanji, rng, sep))
        else:
            variants.append("no-kanji")
        if drop < 0.04 or drop >= 0.10:
            names.append(_name_entry("SYL", family_kana, given_kana, rng, sep))
        else:
            variants.append("no-kana")

        self.count += 1
        number = self.next_number[facility]
        self.next_number[facility] += 1
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"rec-{self.count:06d}",
            "identifier": [{"system": FACILITY_PREFIX + facility, "value": f"{number:08d}"}],
            "name": names,
            "gender": p.gender,
            "birthDate": p.birth_date,
        }
        if chance(0.02, "no-gender"):
            del resource["gender"]
        if chance(0.015, "birth-date-typo"):
            resource["birthDate"] = _date_typo(p.birth_date, rng)

        moved = p.previous_address is not None and (maiden_record or chance(0.35, "moved"))
        address = p.previous_address if moved else p.household.address
        if maiden_record and rng.random() < 0.5:  # still registered at the parents' home
            address = Address(rng.choice(TOWNS), rng.randint(1, 9), rng.randint(1, 30), rng.randint(1, 20))
        if not chance(0.08, "no-address"):
            text, notes = render_address(address, rng) if not clean else (
                f"{address.town[0]}{address.town[1]}{address.town[2]}{address.chome}-{address.ban}-{address.go}", [])
            variants.extend(notes)
            entry: dict[str, Any] = {"use": "home", "text": text}
            if not chance(0.06, "no-postal"):
                postal = address.postal
                entry["postalCode"] = rng.choice((f"{postal[:3]}-{postal[3:]}", postal, full_width_digits(
                    f"{postal[:3]}-{postal[3:]}"))) if not clean else f"{postal[:3]}-{postal[3:]}"
            resource["address"] = [entry]

        phones = []
        landline = p.previous_landline if moved else p.household.landline
        if maiden_record:
            landline = None
        for phone in (p.mobile or p.contact_phone, landline):
            if phone and not chance(0.12, "no-phone"):
                phones.append({"system": "phone", "value": render_phone(phone, rng) if not clean else phone,
                               "use": "mobile" if phone.startswith(("090", "080", "070")) else "home"})
        if phones:
            resource["telecom"] = phones

        member = p.previous_insurance if (maiden_record or chance(0.1, "old-insurance")) else p.member_id
        if member and (clean or rng.random() < 0.5):
            if chance(0.2, "no-branch"):
                member = member.rsplit(":", 1)[0] + ":"
            if chance(0.1, "width-insurance"):
                member = full_width_digits(member)
            resource["identifier"].append({"system": MEMBER_ID_SYSTEM, "value": member})
        return Record(resource["id"], p.person_id, resource, tuple(variants))

    def records_for(self, p: Person, n: int) -> list[Record]:
        return [self.record(p, facility) for facility in self.rng.sample(self.facilities, n)]


def _date_typo(date: str, rng: random.Random) -> str:
    """Day and month swapped, or the day's last digit off by one."""
    year, month, day = date.split("-")
    if int(day) <= 12 and day != month and rng.random() < 0.5:
        return f"{year}-{day}-{month}"
    new_day = int(day) + 1 if int(day) % 10 != 9 and int(day) < 28 else int(day) - 1
    return f"{year}-{month}-{new_day:02d}"


def generate(n_people: int = 5000, seed: int = SEED) -> tuple[list[Person], list[Record]]:
    """People and their facility records: 1-4 records each, from different facilities."""
    people = generate_people(n_people, seed)
    factory = RecordFactory(seed)
    records: list[Record] = []
    for p in people:
        n = factory.rng.choices((1, 2, 3, 4), (30, 35, 23, 12))[0]
        records.extend(factory.records_for(p, n))
    return people, records
