"""Identity service: facility patient numbers linked to one regional person.

Implements the node side of the regional master patient index (ARCHITECTURE.md,
"Identity"; IHE PIXm/PDQm):

* **Regional person.** Facility-scoped ``Patient`` resources (identifier system
  ``urn:oid:1.2.392.100495.20.3.51.1`` + the facility's 10-digit code) are linked to one
  regional ``Patient`` whose id is the regional patient key and whose identifier is in
  the region's namespace (:attr:`IdentityConfig.regional_system`). Links go both ways
  with ``Patient.link`` as the spec describes for master records
  (https://hl7.org/fhir/R4/patient.html#links): local -> regional ``refer``, regional ->
  local ``seealso``; a merged-away regional Patient is ``active: false`` with
  ``replaced-by`` (and the survivor ``replaces``).
* **Patient key.** :meth:`IdentityService.patient_key` is the storage layer's
  ``patient_key`` resolver: local Patient id -> person key. A patient the node has not
  seen gets a person of its own, so every clinical row always has a key. Link, unlink
  and merge re-key the affected rows in the same transaction (:mod:`hie.identity.rekey`).
* **Scored matching.** The service is also a write listener
  (:data:`hie.storage.repository.WriteListener`): when a facility-scoped Patient is
  created or updated it stores the record's blocking keys, matches it against the
  other local patients (:mod:`hie.identity.score`), auto-links above the auto-link
  threshold (grade ``certain`` for exactly one person) and puts the review band in the
  queue. ``not-a-match`` decisions are remembered and never proposed again.
* **Staff actions.** Deterministic link at the counter (insured-person id or regional
  card number), unlink, merge and unmerge, review decisions. Each writes an
  ``identity_event`` row with actor, time and the keys before and after; unlink is the
  inverse of a link, unmerge the inverse of a merge.

Resources are only written through :class:`hie.storage.repository.Repository` (as a
system principal acting for the record's custodian, so custodian and data class stay
what the facility disclosed). The one exception is the re-keying UPDATE of
``patient_key`` (storage maintenance; see :mod:`hie.identity.rekey` for why).

On PostgreSQL, identity changes take a transaction-level advisory lock, so two
facilities registering the same person at the same moment are matched one after the
other instead of missing each other; on SQLite write transactions are already serial.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, select, text

from hie.errors import FhirError, InvalidRequest, NotFound
from hie.fhir.naming import NODE_CANONICAL
from hie.identity import store
from hie.identity.features import (FACILITY_PATIENT_ID_PREFIX, INSURANCE_MEMBER_ID_SYSTEM, PatientFeatures,
                                   extract_features, parse_member_id)
from hie.identity.index import blocking_keys, probe_keys
from hie.identity.rekey import RekeyCount, rekey_all, rekey_patients
from hie.identity.score import (CERTAIN, CERTAINLY_NOT, DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, PROBABLE, MatchScore,
                                Thresholds, Weights, compare)
from hie.principal import Principal
from hie.storage.repository import Stored, Write, WriteResult
from hie.storage.tables import resource as R

REGIONAL_SYSTEM_DEFAULT: Final = f"{NODE_CANONICAL}/sid/regional-person"
IDENTITY_TAG_SYSTEM: Final = f"{NODE_CANONICAL}/CodeSystem/identity"
#: Roles allowed to link, unlink, merge and decide reviews (besides system principals).
STAFF_ROLES: Final = frozenset({"identity-staff", "operator"})
SERVICE_ACTOR: Final = "identity-service"
_LOCK_ID: Final = 0x1D_E7_17  # pg_advisory_xact_lock key of identity changes

_INTERNAL: contextvars.ContextVar[bool] = contextvars.ContextVar("hie_identity_internal", default=False)


class IdentityConflict(FhirError):
    status, issue_code, hie_code = 409, "conflict", "HIE-6001"


@dataclass(frozen=True)
class IdentityConfig:
    """Configuration (environment: ``HIE_REGIONAL_ID_SYSTEM``, ``HIE_IDENTITY_AUTO_LINK``
    = 0 to send every match to review, ``HIE_IDENTITY_AUTO_LINK_THRESHOLD``,
    ``HIE_IDENTITY_REVIEW_THRESHOLD``)."""

    regional_system: str = REGIONAL_SYSTEM_DEFAULT
    auto_link: bool = True
    weights: Weights = DEFAULT_WEIGHTS
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    max_block: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentityConfig:
        t = DEFAULT_THRESHOLDS
        thresholds = Thresholds(
            auto_link=float(env.get("HIE_IDENTITY_AUTO_LINK_THRESHOLD", t.auto_link)),
            review=float(env.get("HIE_IDENTITY_REVIEW_THRESHOLD", t.review)),
            possible=t.possible,
        )
        return cls(regional_system=env.get("HIE_REGIONAL_ID_SYSTEM") or REGIONAL_SYSTEM_DEFAULT,
                   auto_link=env.get("HIE_IDENTITY_AUTO_LINK", "1") not in ("0", "false", "no"),
                   thresholds=thresholds)


@dataclass(frozen=True)
class PersonMatch:
    """Best match of a query against one regional person."""

    person_key: str
    patient_id: str  # the person's best-matching local patient
    score: MatchScore
    stored: Stored | None = None


@dataclass
class ActionResult:
    """What a staff action did (returned by operations and the CLI)."""

    action: str
    event: int | None
    person_key: str | None
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # patient -> (from, to)
    rekeyed: RekeyCount = field(default_factory=RekeyCount)


def is_facility_scoped(resource: Mapping[str, Any]) -> bool:
    return any(isinstance(i, dict) and str(i.get("system") or "").startswith(FACILITY_PATIENT_ID_PREFIX)
               and i.get("value") for i in resource.get("identifier") or ())


def actor_of(principal: Principal) -> str:
    return principal.user_id or principal.client_id or principal.name


def require_staff(principal: Principal) -> None:
    """Link, unlink, merge and review are staff actions. Until authorization is configured
    every request is anonymous and may do everything (as with any other write)."""
    from hie.errors import Forbidden

    if principal.is_system or principal.kind == "anonymous" or principal.roles & STAFF_ROLES:
        return
    raise Forbidden(f"identity changes need one of the roles {sorted(STAFF_ROLES)}")


@contextlib.contextmanager
def _internal() -> Iterator[None]:
    token = _INTERNAL.set(True)
    try:
        yield
    finally:
        _INTERNAL.reset(token)


def _ref_id(ref: Any, res_type: str = "Patient") -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == res_type and parts[-1]:
        return parts[-1]
    return None


class IdentityService:
    """Resolver, write listener and staff actions over one node (see module docstring)."""

    def __init__(self, node: Any, config: IdentityConfig | None = None) -> None:
        self.node = node
        self.config = config or IdentityConfig()
        #: Called after rows were re-keyed: (conn, old key, new key, moved patient ids or None
        #: for the whole key). Derived state keyed by patient (e.g. compiled consent grants)
        #: plugs in here.
        self.rekey_listeners: list[Callable[[Connection, str, str, list[str] | None], None]] = []

    # -- the storage hooks -----------------------------------------------------------------

    def patient_key(self, conn: Connection, patient_id: str) -> str:
        """``PatientKeyResolver``: the person key of a local (or regional) Patient id."""
        key = store.person_key_of(conn, patient_id)
        return key if key is not None else store.ensure_own_person(conn, patient_id, self.node.clock.now_us())

    def __call__(self, repo: Any, results: list[WriteResult]) -> None:
        """``WriteListener``: index, match and link facility-scoped Patients as they are written."""
        if _INTERNAL.get():
            return
        patients = [r for r in results if r.stored is not None and r.stored.res_type == "Patient"]
        if not patients:
            return
        conn = repo.conn
        locked = False
        for result in patients:
            st = result.stored
            assert st is not None
            if result.outcome == "deleted":
                store.delete_blocks(conn, st.res_id)
                for item in store.open_items_of(conn, [st.res_id]):
                    store.set_review_status(conn, item.pk, "superseded", SERVICE_ACTOR, self.node.clock.now_us())
                continue
            resource = st.resource()
            link = store.link(conn, st.res_id)
            if (link is not None and link.role == "regional") or not is_facility_scoped(resource):
                continue
            if not locked:
                self.lock(conn)
                locked = True
            self._on_local_patient(conn, st, resource)

    def lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})

    # -- matching --------------------------------------------------------------------------

    def _on_local_patient(self, conn: Connection, st: Stored, resource: dict[str, Any]) -> None:
        pid = st.res_id
        now = self.node.clock.now_us()
        features = extract_features(resource)
        store.replace_blocks(conn, pid, st.pk, blocking_keys(features))
        key = self.patient_key(conn, pid)
        person = store.person(conn, key)
        assert person is not None
        if person.has_patient or len(store.members(conn, key)) > 1:
            # Already linked: a facility update replaces the whole resource, so put the
            # link to the regional Patient back; identity stays a staff decision.
            self._sync_local(conn, pid)
            return
        matches = self.match(conn, features, exclude={pid}, load=self._load_system,
                             not_same=store.not_a_match(conn, pid))
        matches = [m for m in matches if m.person_key != key]
        certain = [m for m in matches if m.score.grade == CERTAIN]
        if self.config.auto_link and len(certain) == 1:
            m = certain[0]
            self._link_into(conn, pid, m.person_key, method="auto", action="auto-link", actor=SERVICE_ACTOR,
                            score=m.score.score, detail={"candidate": m.patient_id, "score": m.score.score,
                                                         "levels": m.score.levels})
            return
        for m in matches:
            if m.score.grade in (CERTAIN, PROBABLE):
                store.enqueue(conn, pid, m.patient_id, m.score.score, m.score.grade, m.score.levels, now)

    def _load_system(self, conn: Connection, pks: list[int]) -> list[Stored]:
        return self._repo(conn).load_pks(pks)

    def match(self, conn: Connection, features: PatientFeatures, *, exclude: set[str] = frozenset(),  # type: ignore[assignment]
              load: Callable[[Connection, list[int]], list[Stored]], not_same: set[str] = frozenset(),  # type: ignore[assignment]
              ) -> list[PersonMatch]:
        """DB-backed matching: candidates from ``identity_block``, Patients loaded with
        ``load`` (the caller's access-filtered repository for ``$match``), scored, then
        grouped by regional person (best local per person), best first."""
        found = store.candidates(conn, probe_keys(features), self.config.max_block)
        for pid in exclude | not_same:
            found.pop(pid, None)
        if not found:
            return []
        scored: list[tuple[str, MatchScore, Stored]] = []
        for st in load(conn, sorted(found.values())):
            if st.deleted or st.res_type != "Patient" or st.res_id not in found:
                continue
            s = compare(features, extract_features(st.resource()), self.config.weights, self.config.thresholds)
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

    # -- writing resources (through the repository) ----------------------------------------

    def _repo(self, conn: Connection, organization: str | None = None) -> Any:
        principal = Principal(kind="system", name=SERVICE_ACTOR, organization_id=organization)
        return self.node.repository(conn, principal)

    def _write(self, conn: Connection, res_id: str, body: dict[str, Any], version: int | None) -> None:
        custodian = conn.execute(select(R.c.custodian).where(R.c.res_type == "Patient", R.c.res_id == res_id)
                                 ).scalar()
        with _internal():
            self._repo(conn, custodian).write_batch(
                [Write("update", "Patient", res_id, body, if_match=version, method="PUT")])

    def _sync_local(self, conn: Connection, pid: str) -> None:
        """Local Patient: exactly one ``refer`` link, to its person's regional Patient."""
        st = self._repo(conn).current("Patient", pid)
        if st is None or st.deleted:
            return
        res = st.resource()
        old_links = [ln for ln in res.get("link") or () if isinstance(ln, dict)]
        targets = {_ref_id(ln.get("other")) for ln in old_links if ln.get("type") == "refer"}
        regional = store.regional_ids_among(conn, {t for t in targets if t})
        keep = [ln for ln in old_links if not (ln.get("type") == "refer" and _ref_id(ln.get("other")) in regional)]
        link = store.link(conn, pid)
        person = store.person(conn, link.person_key) if link else None
        if person is not None and person.has_patient:
            keep.append({"other": {"reference": f"Patient/{person.person_key}"}, "type": "refer"})
        if keep == old_links:
            return
        body = {k: v for k, v in res.items() if k != "link"}
        if keep:
            body["link"] = keep
        self._write(conn, pid, body, st.version_id)

    def _regional_body(self, conn: Connection, person: store.Person, current: dict[str, Any] | None,
                       locals_: list[store.Link]) -> dict[str, Any]:
        identifiers = [{"use": "official", "system": self.config.regional_system,
                        "value": person.regional_id or person.person_key}]
        for key in store.verified_keys(conn, [ln.patient_id for ln in locals_]):
            if key.startswith("in:"):
                identifiers.append({"system": INSURANCE_MEMBER_ID_SYSTEM, "value": key[3:]})
        body: dict[str, Any] = {
            "resourceType": "Patient",
            "id": person.person_key,
            "meta": {"tag": [{"system": IDENTITY_TAG_SYSTEM, "code": "regional-person",
                              "display": "regional person (master record)"}]},
            "identifier": identifiers,
        }
        if person.status == "merged":
            for name in ("name", "gender", "birthDate"):
                if current and name in current:
                    body[name] = current[name]
            body["active"] = False
            body["link"] = [{"other": {"reference": f"Patient/{person.merged_into}"}, "type": "replaced-by"}]
            return body
        body["active"] = True
        repo = self._repo(conn)
        source = None
        for ln in locals_:  # demographics of the earliest linked record that still exists
            st = repo.current("Patient", ln.patient_id)
            if st is not None and not st.deleted:
                source = st.resource()
                break
        source = source or current or {}
        for name in ("name", "gender", "birthDate"):
            if name in source:
                body[name] = source[name]
        links = [{"other": {"reference": f"Patient/{ln.patient_id}"}, "type": "seealso"} for ln in locals_]
        links += [{"other": {"reference": f"Patient/{k}"}, "type": "replaces"} for k in store.merged_into(conn, person.person_key)
                  if (p := store.person(conn, k)) is not None and p.has_patient]
        if links:
            body["link"] = links
        return body

    def _sync_person(self, conn: Connection, key: str) -> None:
        """Regional Patient of ``key`` (if it has one) and its locals' ``refer`` links."""
        person = store.person(conn, key)
        if person is None or not person.has_patient:
            return
        locals_ = store.members(conn, key)
        st = self._repo(conn).current("Patient", key)
        current = st.resource() if st is not None and not st.deleted else None
        body = self._regional_body(conn, person, current, locals_)
        self._write(conn, key, body, st.version_id if st is not None else None)
        for ln in locals_:
            self._sync_local(conn, ln.patient_id)

    def _ensure_regional(self, conn: Connection, key: str) -> None:
        person = store.person(conn, key)
        assert person is not None
        if person.has_patient:
            return
        # The link row first: the resolver then keys the regional Patient's rows by the person.
        store.set_link(conn, key, key, method="regional", by=SERVICE_ACTOR, now=self.node.clock.now_us(),
                       role="regional")
        store.update_person(conn, key, has_patient=True)

    # -- moving patients between persons ---------------------------------------------------

    def _rekey(self, conn: Connection, old: str, new: str, moving: list[str]) -> RekeyCount:
        everyone = {ln.patient_id for ln in store.members(conn, old, role=None)}
        if everyone <= set(moving):
            count = rekey_all(conn, old, new)
            for listener in self.rekey_listeners:
                listener(conn, old, new, None)
        else:
            count = rekey_patients(conn, old, moving, new)
            for listener in self.rekey_listeners:
                listener(conn, old, new, list(moving))
        return count

    def _link_into(self, conn: Connection, pid: str, target: str, *, method: str, action: str, actor: str,
                   score: float | None = None, detail: dict[str, Any] | None = None) -> ActionResult:
        link = store.link(conn, pid)
        assert link is not None
        old = link.person_key
        target_person = store.person(conn, target)
        if target_person is None or target_person.status != "active":
            raise IdentityConflict(f"regional person {target} is not active")
        now = self.node.clock.now_us()
        result = ActionResult(action, None, target)
        if old != target:
            result.rekeyed = self._rekey(conn, old, target, [pid])
            result.moved[pid] = (old, target)
        store.set_link(conn, pid, target, method=method, by=actor, now=now, score=score)
        result.event = store.log_event(conn, at=now, actor=actor, action=action, patient_id=pid, from_key=old,
                                       to_key=target, detail={"method": method, "previous_method": link.method,
                                                              **(detail or {})})
        self._ensure_regional(conn, target)
        self._supersede_resolved(conn, pid, actor, now)
        self._sync_person(conn, target)
        if old != target:
            self._sync_person(conn, old)
            self._sync_local(conn, pid)
        return result

    def _supersede_resolved(self, conn: Connection, pid: str, actor: str, now: int) -> None:
        """Open review items whose two records now belong to one person are done."""
        key = store.person_key_of(conn, pid)
        mates = {ln.patient_id for ln in store.members(conn, key)} if key else set()
        for item in store.open_items_of(conn, mates):
            if item.patient_id in mates and item.candidate_id in mates:
                store.set_review_status(conn, item.pk, "superseded", actor, now)

    # -- staff actions ---------------------------------------------------------------------

    def _local(self, conn: Connection, pid: str) -> store.Link:
        st = self._repo(conn).current("Patient", pid)
        if st is None or st.deleted:
            raise NotFound(f"Patient/{pid} is not known")
        self.patient_key(conn, pid)
        link = store.link(conn, pid)
        assert link is not None
        if link.role != "local":
            raise InvalidRequest(f"Patient/{pid} is a regional person, not a facility's patient record")
        return link

    def _active(self, conn: Connection, key: str) -> str:
        """Follow merges to the surviving person."""
        seen = set()
        while True:
            p = store.person(conn, key)
            if p is None:
                raise NotFound(f"regional person {key} is not known")
            if p.status != "merged" or not p.merged_into or key in seen:
                return key
            seen.add(key)
            key = p.merged_into

    def person_of(self, conn: Connection, pid: str) -> str:
        """Person key for a Patient id (local or regional), following merges."""
        key = store.person_key_of(conn, pid)
        if key is None:
            raise NotFound(f"Patient/{pid} is not known to the identity service")
        return self._active(conn, key)

    def link_at_counter(self, conn: Connection, patient_id: str, *, actor: str, system: str | None = None,
                        value: str | None = None, target: str | None = None) -> ActionResult:
        """Deterministic link: staff saw the patient's identification (insured-person id
        ``insurer:symbol:number:branch`` or the regional card number), or chose the
        regional person (``target``: a Patient id, regional or local)."""
        self.lock(conn)
        link = self._local(conn, patient_id)
        now = self.node.clock.now_us()
        detail: dict[str, Any] = {}
        if target:
            dest = self.person_of(conn, target)
            detail["target"] = target
        elif system == self.config.regional_system and value:
            detail["identifier"] = {"system": system, "value": value}
            owners = {self._active(conn, p.person_key) for p in store.persons_by_regional_id(conn, value)}
            if len(owners) > 1:
                raise IdentityConflict(f"regional card number {value} belongs to {len(owners)} persons; merge them")
            if owners:
                dest = owners.pop()
            else:
                own = store.person(conn, link.person_key)
                assert own is not None
                if own.regional_id in (None, value):
                    dest = own.person_key
                else:  # the record carries another person's card: it gets a person of its own
                    dest = store.new_person_key()
                    store.create_person(conn, dest, now)
                store.update_person(conn, dest, regional_id=value)
        elif system == INSURANCE_MEMBER_ID_SYSTEM and value:
            ins = parse_member_id(value)
            if ins is None or not ins.branch:
                raise InvalidRequest("an insured-person id needs insurer:symbol:number:branch (the branch number "
                                     "tells family members apart)", expression=["identifier"])
            key = "in:" + ins.key
            detail["identifier"] = {"system": system, "value": ins.key}
            holders = store.patients_with_key(conn, key)
            owners = {self.person_of(conn, p) for p in holders if p != patient_id}
            owners.discard(link.person_key)
            if len(owners) > 1:
                raise IdentityConflict(f"insured-person id {ins.key} appears on records of {len(owners)} regional "
                                       "persons; review and merge them first")
            dest = owners.pop() if owners else link.person_key
            pk = conn.execute(select(R.c.pk).where(R.c.res_type == "Patient", R.c.res_id == patient_id)).scalar()
            store.add_verified_block(conn, patient_id, pk, key)
        else:
            raise InvalidRequest("$link needs an identifier (insured-person id or regional card number) or a target",
                                 expression=["identifier"])
        return self._link_into(conn, patient_id, dest, method="counter", action="counter-link", actor=actor,
                               detail=detail)

    def unlink(self, conn: Connection, patient_id: str, *, actor: str) -> ActionResult:
        """Take a local patient out of its regional person (the inverse of a link). It goes
        back to the person it had before the link if that one is empty, else to a new one;
        the pairs with the remaining records are remembered as not-a-match."""
        self.lock(conn)
        link = self._local(conn, patient_id)
        key = link.person_key
        person = store.person(conn, key)
        assert person is not None
        mates = [ln.patient_id for ln in store.members(conn, key) if ln.patient_id != patient_id]
        if not mates and not person.has_patient:
            raise InvalidRequest(f"Patient/{patient_id} is not linked to a regional person")
        now = self.node.clock.now_us()
        previous = store.last_link_event(conn, patient_id, key)
        dest = None
        if previous and previous.from_key and previous.from_key != key:
            old = store.person(conn, previous.from_key)
            if old is not None and old.status == "active" and not store.members(conn, old.person_key, role=None):
                dest = old.person_key
        if dest is None:
            dest = store.new_person_key()
            store.create_person(conn, dest, now)
        result = ActionResult("unlink", None, dest)
        result.rekeyed = self._rekey(conn, key, dest, [patient_id])
        result.moved[patient_id] = (key, dest)
        store.set_link(conn, patient_id, dest, method="own", by=actor, now=now)
        for mate in mates:
            store.record_decision(conn, patient_id, mate, "not-a-match", actor, now)
        result.event = store.log_event(conn, at=now, actor=actor, action="unlink", patient_id=patient_id,
                                       from_key=key, to_key=dest,
                                       detail={"previous_method": link.method, "not_a_match": mates,
                                               "reverses": previous.pk if previous else None})
        if previous:
            store.mark_reversed(conn, previous.pk, result.event)
        self._sync_local(conn, patient_id)
        self._sync_person(conn, key)
        return result

    def merge(self, conn: Connection, source: str, target: str, *, actor: str) -> ActionResult:
        """Merge regional person ``source`` into ``target`` (Patient ids, regional or local).
        The event keeps the pre-merge mapping; :meth:`unmerge` restores it."""
        self.lock(conn)
        src, dst = self.person_of(conn, source), self.person_of(conn, target)
        if src == dst:
            raise InvalidRequest(f"Patient/{source} and Patient/{target} are already the same regional person")
        now = self.node.clock.now_us()
        moved = store.members(conn, src, role=None)
        src_person = store.person(conn, src)
        assert src_person is not None
        result = ActionResult("merge", None, dst)
        result.rekeyed = self._rekey(conn, src, dst, [ln.patient_id for ln in moved])
        for ln in moved:
            store.set_link(conn, ln.patient_id, dst, method=ln.method, by=ln.linked_by, now=ln.linked_at,
                           score=ln.score, role=ln.role)
            result.moved[ln.patient_id] = (src, dst)
        store.update_person(conn, src, status="merged", merged_into=dst)
        result.event = store.log_event(conn, at=now, actor=actor, action="merge", patient_id=None, from_key=src,
                                       to_key=dst, detail={"mapping": {ln.patient_id: ln.person_key for ln in moved},
                                                           "source": source, "target": target})
        self._ensure_regional(conn, dst)
        for ln in moved:
            self._supersede_resolved(conn, ln.patient_id, actor, now)
        self._sync_person(conn, src)
        self._sync_person(conn, dst)
        return result

    def unmerge(self, conn: Connection, event_pk: int, *, actor: str) -> ActionResult:
        """Undo a merge: the records that came from the source person go back to it."""
        self.lock(conn)
        ev = store.event(conn, event_pk)
        if ev is None or ev.action != "merge":
            raise NotFound(f"merge event {event_pk} is not known")
        if ev.reversed_by is not None:
            raise IdentityConflict(f"merge event {event_pk} was already undone by event {ev.reversed_by}")
        src, dst = ev.from_key, ev.to_key
        assert src and dst
        src_person = store.person(conn, src)
        if src_person is None or src_person.status != "merged" or src_person.merged_into != dst:
            raise IdentityConflict(f"person {src} is no longer merged into {dst}")
        now = self.node.clock.now_us()
        current = store.links(conn, ev.detail["mapping"])
        back = [pid for pid, ln in current.items() if ln.person_key == dst]
        result = ActionResult("unmerge", None, src)
        result.rekeyed = self._rekey(conn, dst, src, back)
        for pid in back:
            ln = current[pid]
            store.set_link(conn, pid, src, method=ln.method, by=ln.linked_by, now=ln.linked_at, score=ln.score,
                           role=ln.role)
            result.moved[pid] = (dst, src)
        store.update_person(conn, src, status="active", merged_into=None)
        result.event = store.log_event(conn, at=now, actor=actor, action="unmerge", patient_id=None, from_key=dst,
                                       to_key=src, detail={"reverses": event_pk, "restored": back,
                                                           "not_restored": sorted(set(ev.detail["mapping"]) - set(back))})
        store.mark_reversed(conn, event_pk, result.event)
        self._sync_person(conn, src)
        self._sync_person(conn, dst)
        return result

    def decide(self, conn: Connection, item_pk: int, action: str, *, actor: str) -> ActionResult:
        """Resolve a review item: ``link`` (same person) or ``not-a-match`` (remembered)."""
        self.lock(conn)
        item = store.review_item(conn, item_pk)
        if item is None:
            raise NotFound(f"review item {item_pk} is not known")
        if item.status != "open":
            raise IdentityConflict(f"review item {item_pk} was already resolved ({item.status})")
        now = self.node.clock.now_us()
        if action == "not-a-match":
            store.set_review_status(conn, item_pk, "not-a-match", actor, now)
            ev = store.log_event(conn, at=now, actor=actor, action="not-a-match", patient_id=item.patient_id,
                                 from_key=None, to_key=None, detail={"item": item_pk, "candidate": item.candidate_id})
            return ActionResult("not-a-match", ev, None)
        if action != "link":
            raise InvalidRequest(f"unknown review action {action!r} (link | not-a-match)", expression=["action"])
        a, b = self.person_of(conn, item.patient_id), self.person_of(conn, item.candidate_id)
        detail = {"item": item_pk, "candidate": item.candidate_id, "score": item.score}
        if a == b:
            result = ActionResult("review-link", None, a)
        elif self._alone(conn, a, item.patient_id):
            result = self._link_into(conn, item.patient_id, b, method="review", action="review-link", actor=actor,
                                     score=item.score, detail=detail)
        elif self._alone(conn, b, item.candidate_id):
            result = self._link_into(conn, item.candidate_id, a, method="review", action="review-link",
                                     actor=actor, score=item.score, detail=detail)
        else:
            result = self.merge(conn, item.patient_id, item.candidate_id, actor=actor)
        store.set_review_status(conn, item_pk, "linked", actor, now)
        return result

    def _alone(self, conn: Connection, key: str, pid: str) -> bool:
        person = store.person(conn, key)
        return person is not None and not person.has_patient and [
            ln.patient_id for ln in store.members(conn, key, role=None)] == [pid]

    # -- cross-references (PIXm) -----------------------------------------------------------

    def follow_consent_grants(self, conn: Connection, old: str, new: str, moved: list[str] | None) -> None:
        """Rekey listener: compiled consent grants (:mod:`hie.enforcement.grants`) are keyed
        by person too. A whole person moves with the grants table's own re-key; when only
        some records move, the Consents now under ``new`` are recompiled from their rows."""
        try:
            from hie.enforcement import grants
        except ImportError:  # consent enforcement not installed
            return
        if moved is None:
            grants.rekey(conn, old, new)
            return
        rows = conn.execute(select(R.c.pk, R.c.res_type, R.c.res_id, R.c.version_id, R.c.last_updated, R.c.deleted,
                                   R.c.content).where(R.c.res_type == "Consent", R.c.patient_key == new,
                                                      R.c.deleted.is_(False))).all()
        if rows:
            grants.on_write(self._repo(conn), [WriteResult("updated", Stored(*row)) for row in rows])

    def same_person(self, conn: Connection, patient_ids: list[str]) -> list[str]:
        """Every Patient id (local and regional) of the persons of ``patient_ids``."""
        keys = {self.person_of(conn, pid) for pid in patient_ids if store.person_key_of(conn, pid)}
        out: list[str] = []
        for key in sorted(keys):
            for ln in store.members(conn, key, role=None):
                out.append(ln.patient_id)
        return list(dict.fromkeys(out))


def install(node: Any, config: IdentityConfig | None = None) -> IdentityService:
    """Plug the identity service into a node: the patient-key resolver and a write listener."""
    if config is None:
        config = IdentityConfig.from_env({**os.environ, **getattr(node.settings, "extra", {})})
    service = IdentityService(node, config)
    service.rekey_listeners.append(service.follow_consent_grants)
    node.patient_key_resolver = service.patient_key
    node.write_listeners.append(service)
    node.identity = service
    return service


def service_of(repo_or_ctx: Any) -> IdentityService:
    """The identity service installed on the node that built this repository (or context)."""
    repo = getattr(repo_or_ctx, "repo", repo_or_ctx)
    for listener in getattr(repo, "listeners", ()):
        if isinstance(listener, IdentityService):
            return listener
    raise FhirError("the identity service is not installed on this node", status=501)
