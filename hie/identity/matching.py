"""Scored matching against the stored local patients, and when it may run.

Candidates come from ``identity_block`` (:func:`hie.identity.store.candidates`), the
Patients are loaded by the caller's ``load`` (the caller's access-filtered repository for
``$match``; the system repository for the write listener), scored with
:func:`hie.identity.score.compare` and grouped by regional person (best local record per
person).

Who drives matching (:func:`drives_matching`): a facility's record is matched when the
record's custodian facility writes it, or the system principal does (feeds, ingest,
maintenance). A patient editing their own contact details, or any other writer, never
moves a record between persons: identity follows custody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from hie.identity import store
from hie.identity.features import PatientFeatures, extract_features
from hie.identity.index import probe_keys
from hie.identity.model import IdentityConfig
from hie.identity.score import CERTAIN, CERTAINLY_NOT, PROBABLE, MatchScore, compare
from hie.principal import Principal
from hie.storage.repository import Stored

Loader = Callable[[Connection, list[int]], list[Stored]]


@dataclass(frozen=True)
class PersonMatch:
    """Best match of a query against one regional person."""

    person_key: str
    patient_id: str  # the person's best-matching local patient
    score: MatchScore
    stored: Stored | None = None


@dataclass
class Decision:
    """What the write listener does with a record's matches."""

    auto_link: PersonMatch | None = None
    review: list[PersonMatch] = field(default_factory=list)


def drives_matching(principal: Principal, custodian: str | None) -> bool:
    """Whether ``principal``'s write of a record with ``custodian`` may (re)match it."""
    if principal.is_system:
        return True
    if principal.kind == "patient":
        return False
    return bool(custodian) and principal.organization_id == custodian


def match(conn: Connection, features: PatientFeatures, config: IdentityConfig, *, load: Loader,
          exclude: frozenset[str] | set[str] = frozenset(),
          not_same: frozenset[str] | set[str] = frozenset()) -> list[PersonMatch]:
    """Matches of ``features`` by regional person, best first."""
    found = store.candidates(conn, probe_keys(features), config.max_block)
    for pid in set(exclude) | set(not_same):
        found.pop(pid, None)
    if not found:
        return []
    scored: list[tuple[str, MatchScore, Stored]] = []
    for st in load(conn, sorted(found.values())):
        if st.deleted or st.res_type != "Patient" or st.res_id not in found:
            continue
        s = compare(features, extract_features(st.resource()), config.weights, config.thresholds)
        if s.grade != CERTAINLY_NOT:
            scored.append((st.res_id, s, st))
    if not scored:
        return []
    links = store.links(conn, [pid for pid, _, _ in scored])
    best: dict[str, PersonMatch] = {}
    for pid, s, st in scored:
        key = links[pid].person_key if pid in links else pid
        if key not in best or s.score > best[key].score.score:
            best[key] = PersonMatch(key, pid, s, st)
    return sorted(best.values(), key=lambda m: (-m.score.score, m.patient_id))


def decide(matches: list[PersonMatch], own_key: str, config: IdentityConfig) -> Decision:
    """Auto-link to the one person graded certain; otherwise queue the review band."""
    others = [m for m in matches if m.person_key != own_key]
    certain = [m for m in others if m.score.grade == CERTAIN]
    if config.auto_link and len(certain) == 1:
        return Decision(auto_link=certain[0])
    return Decision(review=[m for m in others if m.score.grade in (CERTAIN, PROBABLE)])
