"""In-memory blocking index answering Patient/$match.

Implements candidate selection and ranking for
https://hl7.org/fhir/R4/patient-operation-match.html (IHE PDQm ITI-119): a query is
scored only against records that share at least one blocking key with it, so the cost
of a match does not grow with the size of the region.

Blocking keys are plain strings (``<kind>:<value>``) computed by :func:`blocking_keys`,
so the storage layer can persist them in a ``(key, patient)`` table with an index on
``key`` and select candidates with ``WHERE key IN (:probe_keys)``; this module is the
reference implementation of that table held in dicts.

Kinds of key (each catches records the others miss):

* ``kn`` kana full-name reading key - kanji missing, typed in different kanji, old forms
* ``kj`` kanji full name (folded variants) - kana typos
* ``bg`` birth date + gender - any name change or typo (married names)
* ``bf`` / ``bk`` birth date + first kana / first kanji of the family name - wrong gender
* ``ph`` phone - moved records whose names were typed differently
* ``pb`` postal code + birth year - same household area, date typo
* ``in`` / ``ih`` insured-person id with branch / the policy (household)
* ``fi`` facility patient number
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from hie.identity.features import PatientFeatures, extract_features
from hie.identity.score import (CERTAIN, CERTAINLY_NOT, DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, Thresholds,
                                Weights, compare)

_GENDERS = ("male", "female", "other", "?")


class MatchResult(NamedTuple):
    candidate_id: str
    score: float
    grade: str


def blocking_keys(f: PatientFeatures) -> set[str]:
    """The blocking keys a record is stored under."""
    keys: set[str] = set()
    if f.kana_full_key:
        keys.add("kn:" + f.kana_full_key)
    if f.kanji_full:
        keys.add("kj:" + f.kanji_full)
    if f.birth_date:
        keys.add(f"bg:{f.birth_date}|{f.gender or '?'}")
        if f.kana_family_key:
            keys.add(f"bf:{f.birth_date}|{f.kana_family_key[0]}")
        if f.kanji_family:
            keys.add(f"bk:{f.birth_date}|{f.kanji_family[0]}")
        keys.update(f"pb:{code}|{f.birth_date[:4]}" for code in f.postal_codes)
    keys.update("ph:" + phone for phone in f.phones)
    for ins in f.insurance:
        keys.add("ih:" + ":".join(ins.household))
        if ins.branch:
            keys.add("in:" + ins.key)
    keys.update(f"fi:{system}|{value}" for system, value in f.facility_ids)
    return keys


def probe_keys(f: PatientFeatures) -> set[str]:
    """The keys to look up for a query: its own keys, with the gender widened to any
    value when the query's gender is unknown or the stored record's may be."""
    keys = blocking_keys(f)
    if f.birth_date:
        keys.update(f"bg:{f.birth_date}|{g}" for g in ("?", "other") if f.gender != g)
        if not f.gender or f.gender == "other":
            keys.update(f"bg:{f.birth_date}|{g}" for g in _GENDERS)
    return keys


class MatchIndex:
    """Records (id -> features) and the blocking table (key -> ids)."""

    def __init__(self, weights: Weights = DEFAULT_WEIGHTS, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                 max_block: int = 1000) -> None:
        # Blocks larger than max_block (a nursing home's phone, a dummy 0000000000) are
        # skipped at query time: they say little and would cost a scan.
        self.weights = weights
        self.thresholds = thresholds
        self.max_block = max_block
        self._features: dict[str, PatientFeatures] = {}
        self._keys: dict[str, set[str]] = {}
        self._blocks: defaultdict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._features)

    def features(self, record_id: str) -> PatientFeatures:
        return self._features[record_id]

    def add(self, record_id: str, patient: Mapping[str, Any] | PatientFeatures) -> None:
        """Index (or re-index) a record."""
        if record_id in self._features:
            self.remove(record_id)
        f = patient if isinstance(patient, PatientFeatures) else extract_features(patient)
        keys = blocking_keys(f)
        self._features[record_id] = f
        self._keys[record_id] = keys
        for key in keys:
            self._blocks[key].add(record_id)

    def remove(self, record_id: str) -> None:
        for key in self._keys.pop(record_id, ()):
            block = self._blocks[key]
            block.discard(record_id)
            if not block:
                del self._blocks[key]
        self._features.pop(record_id, None)

    def candidates(self, f: PatientFeatures, exclude: Iterable[str] = ()) -> set[str]:
        found: set[str] = set()
        for key in probe_keys(f):
            block = self._blocks.get(key)
            if block and len(block) <= self.max_block:
                found |= block
        found.difference_update(exclude)
        return found

    def match_features(self, f: PatientFeatures, count: int | None = None, only_certain: bool = False,
                       exclude: Iterable[str] = ()) -> list[MatchResult]:
        """Ranked matches better than certainly-not, best first.

        ``only_certain`` follows $match ``onlyCertainMatches``: the single certain match,
        or nothing when there is none or more than one.
        """
        results = []
        for cid in self.candidates(f, exclude):
            scored = compare(f, self._features[cid], self.weights, self.thresholds)
            if scored.grade != CERTAINLY_NOT:
                results.append(MatchResult(cid, scored.score, scored.grade))
        results.sort(key=lambda r: (-r.score, r.candidate_id))
        if only_certain:
            certain = [r for r in results if r.grade == CERTAIN]
            results = certain if len(certain) == 1 else []
        return results[:count] if count is not None else results

    def match(self, patient: Mapping[str, Any], count: int | None = None, only_certain: bool = False,
              exclude: Iterable[str] = ()) -> list[MatchResult]:
        """Patient/$match over the index for a FHIR Patient dict."""
        return self.match_features(extract_features(patient), count, only_certain, exclude)
