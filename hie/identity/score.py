"""Scored comparison of two patient records, graded with FHIR match-grade codes.

Implements the scoring behind Patient/$match
(https://hl7.org/fhir/R4/patient-operation-match.html; IHE PDQm ITI-119): a
Fellegi-Sunter style sum of per-field log2 likelihood ratios (``log2(m/u)``; m = chance
the field agrees this way for the same person, u = for two different people), graded
``certain`` / ``probable`` / ``possible`` / ``certainly-not`` as in the extension
http://hl7.org/fhir/StructureDefinition/match-grade.

Why not a pure sum: the fields are not independent, and the failures that matter most
in a Japanese region are exactly the correlated ones.

* Postal code, address and phone describe one household; family members share them.
  Their positive evidence is summed and capped (``Weights.household_cap``).
* Twins share family name, birth date, household and insurance policy; only the given
  name (and the insurance branch number) tells them apart, and twins' names are often
  alike (優太/優斗). A given-name disagreement weighs heavily, and ``certain`` also
  requires the given name to agree in spelling or reading (auto-link gate).
* A married-name change (family name differs, all else agrees) must reach a human: the
  auto-link gate also requires the family name not to disagree.

Weights and thresholds are configuration (:class:`Weights`, :class:`Thresholds`); the
defaults were set from the m/u reasoning in the comments, then checked (not fitted)
against the synthetic population in ``tests/identity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hie.identity.features import PatientFeatures
from hie.identity.normalize import is_mobile, kana_loose

MATCH_GRADE_URL: Final = "http://hl7.org/fhir/StructureDefinition/match-grade"
CERTAIN: Final = "certain"
PROBABLE: Final = "probable"
POSSIBLE: Final = "possible"
CERTAINLY_NOT: Final = "certainly-not"

# Agreement levels.
EXACT: Final = "exact"          # same spelling (after folding)
READING: Final = "reading"      # same reading, the other script absent on one side
VARIANT: Final = "variant"      # one script agrees, the other disagrees (homophone kanji)
FUZZY: Final = "fuzzy"          # similar kana, no kanji to confirm
SIMILAR: Final = "similar"      # similar kana but different kanji (twins: 優太/優斗)
FORMER: Final = "former"        # agrees with a recorded former (maiden/old) family name
NEAR: Final = "near"            # birth date: one digit off or day/month swapped
PARTIAL: Final = "partial"      # birth date: one side only year or year-month, consistent
AGREE: Final = "agree"
DIFFERS: Final = "differs"      # same identifier namespace, different value
HOUSEHOLD: Final = "household"  # insurance: same policy, branch unknown on one side
DISAGREE: Final = "disagree"
MISSING: Final = "missing"


@dataclass(frozen=True, slots=True)
class Weights:
    """log2 likelihood ratios per field and agreement level."""

    # Family names repeat a lot (佐藤 ~1.5% of Japan), so agreement is worth less than
    # for given names; disagreement is the married-name case, kept moderate.
    family: dict[str, float] = field(default_factory=lambda: {
        EXACT: 7.0, READING: 6.0, VARIANT: 4.0, FUZZY: 2.0, FORMER: 2.0, SIMILAR: -4.0, DISAGREE: -7.0})
    # Given names are more diverse, and disagreement is what separates twins and siblings.
    given: dict[str, float] = field(default_factory=lambda: {
        EXACT: 9.0, READING: 8.0, VARIANT: 5.0, FUZZY: 0.0, SIMILAR: -6.0, DISAGREE: -10.0})
    # u(exact) ~ 1/(365*80); m(disagree) ~ 2% (typing errors), u(disagree) ~ 1.
    birth_date: dict[str, float] = field(default_factory=lambda: {
        EXACT: 10.0, NEAR: 3.0, PARTIAL: 3.0, DISAGREE: -8.0})
    gender: dict[str, float] = field(default_factory=lambda: {AGREE: 0.8, DISAGREE: -5.0})
    postal_code: dict[str, float] = field(default_factory=lambda: {AGREE: 3.0, DISAGREE: -0.5})
    # People move: disagreement is weak evidence. PARTIAL = one address a prefix of the other.
    address: dict[str, float] = field(default_factory=lambda: {AGREE: 5.0, PARTIAL: 2.0, DISAGREE: -0.5})
    phone_mobile: float = 6.0
    phone_landline: float = 4.0
    phone_disagree: float = -0.5
    household_cap: float = 9.0
    # Same insured-person id incl. branch: near-unique. Same policy, different branch:
    # a different member of the family. Different insurers: people change jobs.
    insurance: dict[str, float] = field(default_factory=lambda: {
        EXACT: 12.0, HOUSEHOLD: 3.0, DIFFERS: -10.0, DISAGREE: -1.0})
    # One facility, one patient number: same number is decisive, different numbers are
    # strong evidence against (but duplicate registrations exist).
    facility_id: dict[str, float] = field(default_factory=lambda: {AGREE: 20.0, DIFFERS: -6.0})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score bands. ``auto_link`` and above (and passing the gate): certain; ``review``
    and above: probable (the review band); ``possible`` and above: possible."""

    auto_link: float = 28.0
    review: float = 12.0
    possible: float = 4.0


DEFAULT_WEIGHTS: Final = Weights()
DEFAULT_THRESHOLDS: Final = Thresholds()


@dataclass(frozen=True, slots=True)
class MatchScore:
    score: float
    grade: str
    levels: dict[str, str]

    @property
    def auto_link(self) -> bool:
        return self.grade == CERTAIN

    @property
    def review(self) -> bool:
        return self.grade == PROBABLE


# --- string similarity --------------------------------------------------------------


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance (adjacent transpositions count 1), capped at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


def kana_similar(a: str, b: str) -> bool:
    """Typing-error similarity of two normalized kana strings: same reading without
    voicing marks, or one edit (two for names of 7+ kana) on names of 3+ kana."""
    if kana_loose(a) == kana_loose(b):
        return True
    shortest = min(len(a), len(b))
    if shortest < 3:
        return False
    return edit_distance(a, b) <= (2 if shortest >= 7 else 1)


# --- field comparisons --------------------------------------------------------------


def name_level(kanji_a: str, kanji_b: str, kana_a: str, kana_b: str, key_a: str, key_b: str) -> str:
    """Agreement level of one name part written in kanji and kana on both records."""
    kanji_both, kana_both = bool(kanji_a and kanji_b), bool(kana_a and kana_b)
    if not (kanji_both or kana_both):
        return MISSING
    kana_same = kana_both and key_a == key_b
    kana_close = kana_both and not kana_same and kana_similar(kana_a, kana_b)
    if kanji_both:
        if kanji_a == kanji_b:
            return EXACT if not kana_both or kana_same or kana_close else VARIANT
        if kana_same:
            return VARIANT
        if kana_close or (not kana_both and min(len(kanji_a), len(kanji_b)) >= 2
                          and edit_distance(kanji_a, kanji_b, 1) <= 1):
            return SIMILAR
        return DISAGREE
    if kana_same:
        return READING
    return FUZZY if kana_close else DISAGREE


def _names(a: PatientFeatures, b: PatientFeatures) -> tuple[str, str]:
    if (a.kanji_family or a.kana_family) and (b.kanji_family or b.kana_family):
        family = name_level(a.kanji_family, b.kanji_family, a.kana_family, b.kana_family,
                            a.kana_family_key, b.kana_family_key)
        given = name_level(a.kanji_given, b.kanji_given, a.kana_given, b.kana_given,
                           a.kana_given_key, b.kana_given_key)
        if family in (DISAGREE, SIMILAR) and (
                {a.kanji_family, a.kana_family_key} & b.former_families
                or {b.kanji_family, b.kana_family_key} & a.former_families):
            family = FORMER
        return family, given
    # One side could not be split into family and given: judge the full name once.
    full = name_level(a.kanji_full, b.kanji_full, a.kana_full, b.kana_full, a.kana_full_key, b.kana_full_key)
    return full, full


def birth_date_level(a: str | None, b: str | None) -> str:
    if not a or not b:
        return MISSING
    if len(a) != len(b):
        short, long_ = sorted((a, b), key=len)
        return PARTIAL if long_.startswith(short) else DISAGREE
    if a == b:
        return EXACT if len(a) == 10 else PARTIAL
    if len(a) == 10:
        if sum(x != y for x, y in zip(a, b, strict=True)) == 1:
            return NEAR
        if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
            return NEAR
    return DISAGREE


def _address_level(a: frozenset[str], b: frozenset[str]) -> str:
    if not a or not b:
        return MISSING
    if a & b:
        return AGREE
    for x in a:
        for y in b:
            short, long_ = (x, y) if len(x) <= len(y) else (y, x)
            if len(short) >= 5 and long_.startswith(short):
                return PARTIAL
    return DISAGREE


def insurance_level(a: PatientFeatures, b: PatientFeatures) -> str:
    if not a.insurance or not b.insurance:
        return MISSING
    level = DISAGREE
    for x in a.insurance:
        for y in b.insurance:
            if x.household != y.household:
                continue
            if x.branch and y.branch:
                if x.branch == y.branch:
                    return EXACT
                level = DIFFERS
            elif level == DISAGREE:
                level = HOUSEHOLD
    return level


def facility_level(a: PatientFeatures, b: PatientFeatures) -> str:
    if a.facility_ids & b.facility_ids:
        return AGREE
    systems_a = {system for system, _ in a.facility_ids}
    if any(system in systems_a for system, _ in b.facility_ids):
        return DIFFERS
    return MISSING


# --- the comparison -----------------------------------------------------------------


def compare(a: PatientFeatures, b: PatientFeatures, weights: Weights = DEFAULT_WEIGHTS,
            thresholds: Thresholds = DEFAULT_THRESHOLDS) -> MatchScore:
    """Score and grade the hypothesis "a and b are the same person". Symmetric."""
    w = weights
    family, given = _names(a, b)
    birth = birth_date_level(a.birth_date, b.birth_date)
    gender = MISSING if not a.gender or not b.gender or "other" in (a.gender, b.gender) else (
        AGREE if a.gender == b.gender else DISAGREE)
    postal = MISSING if not a.postal_codes or not b.postal_codes else (
        AGREE if a.postal_codes & b.postal_codes else DISAGREE)
    address = _address_level(a.addresses, b.addresses)
    shared_phones = a.phones & b.phones
    phone = MISSING if not a.phones or not b.phones else (AGREE if shared_phones else DISAGREE)
    insurance = insurance_level(a, b)
    facility = facility_level(a, b)

    household = w.postal_code.get(postal, 0.0) + w.address.get(address, 0.0)
    if shared_phones:
        household += w.phone_mobile if any(is_mobile(p) for p in shared_phones) else w.phone_landline
    elif phone == DISAGREE:
        household += w.phone_disagree
    score = (w.family.get(family, 0.0) + w.given.get(given, 0.0) + w.birth_date.get(birth, 0.0)
             + w.gender.get(gender, 0.0) + min(household, w.household_cap)
             + w.insurance.get(insurance, 0.0) + w.facility_id.get(facility, 0.0))

    levels = {"family": family, "given": given, "birthDate": birth, "gender": gender, "postalCode": postal,
              "address": address, "phone": phone, "insurance": insurance, "facilityId": facility}
    return MatchScore(round(score, 3), grade(score, levels, thresholds), levels)


def auto_link_gate(levels: dict[str, str]) -> bool:
    """Evidence ``certain`` needs besides the score: the given name agrees in spelling or
    reading (twins), the family name does not disagree (married-name change), and the
    birth date agrees exactly unless an identifier (insurance id with branch, facility
    patient number) vouches for the person."""
    identified = levels["insurance"] == EXACT or levels["facilityId"] == AGREE
    return (levels["given"] in (EXACT, READING)
            and levels["family"] not in (DISAGREE, SIMILAR, FORMER)
            and (levels["birthDate"] == EXACT or identified))


def grade(score: float, levels: dict[str, str], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> str:
    """FHIR match-grade code for a score."""
    if score >= thresholds.auto_link and auto_link_gate(levels):
        return CERTAIN
    if score >= thresholds.review:
        return PROBABLE
    if score >= thresholds.possible:
        return POSSIBLE
    return CERTAINLY_NOT


def match_grade_extension(code: str) -> dict[str, str]:
    """The ``Bundle.entry.search`` extension carrying the grade."""
    return {"url": MATCH_GRADE_URL, "valueCode": code}


def search_score(score: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> float:
    """``Bundle.entry.search.score`` in 0..1: a monotone map of the weight sum with the
    review threshold at 0.5 and the auto-link threshold at 0.99 (not a calibrated
    probability)."""
    span = max(thresholds.auto_link - thresholds.review, 1e-9)
    exponent = -(score - thresholds.review) * 6.6293566 / span  # log2(99) = 6.629...
    return round(1.0 / (1.0 + 2.0 ** max(min(exponent, 60.0), -60.0)), 4)
