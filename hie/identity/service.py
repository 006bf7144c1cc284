"""Identity service: facility patient numbers linked to one regional person.

Implements the node side of the regional master patient index (ARCHITECTURE.md,
"Identity"; IHE PIXm/PDQm). :class:`IdentityService` is the one object a node holds
(``node.identity``); it puts together the seams of the service:

* **keys** (:mod:`hie.identity.keys`): the storage layer's ``patient_key`` resolver, local
  Patient id -> person key, following merges;
* **matching** (:mod:`hie.identity.matching`): candidates, scores and the auto-link /
  review decision, and which writes may drive it (custodian facility or system, never a
  patient's self-edit);
* **linkage** (:mod:`hie.identity.linkage`): link, unlink, merge, unmerge, review
  decisions, re-keying and the event log; the Patients identity writes
  (:mod:`hie.identity.records`);
* **authorization** of staff actions (:mod:`hie.identity.authz`), applied by the FHIR
  operations (:mod:`hie.identity.operations`).

The service is also a write listener (:data:`hie.storage.repository.WriteListener`):
when a facility-scoped Patient is created or updated by a writer that may drive matching,
it stores the record's blocking keys, auto-links above the threshold and queues the
review band. ``not-a-match`` decisions are remembered and never proposed again. On
PostgreSQL identity changes take a transaction-level advisory lock.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection

from hie.errors import NotSupported
from hie.identity import keys, matching, store
from hie.identity.features import FACILITY_PATIENT_ID_PREFIX, PatientFeatures, extract_features
from hie.identity.index import blocking_keys
from hie.identity.linkage import Linkage, RekeyListener
from hie.identity.model import (IDENTITY_TAG_SYSTEM, REGIONAL_SYSTEM_DEFAULT, SERVICE_ACTOR, ActionResult,
                                IdentityConfig, IdentityConflict)
from hie.identity.records import Records, fresh, internal, is_internal
from hie.storage.repository import Stored, WriteResult

__all__ = ["IDENTITY_TAG_SYSTEM", "REGIONAL_SYSTEM_DEFAULT", "SERVICE_ACTOR", "ActionResult", "IdentityConfig",
           "IdentityConflict", "IdentityService", "install", "internal", "is_facility_scoped", "service_of"]

_internal = internal  # bench/match_db.py loads Patients without the listener


def is_facility_scoped(resource: dict[str, Any]) -> bool:
    return any(isinstance(i, dict) and str(i.get("system") or "").startswith(FACILITY_PATIENT_ID_PREFIX)
               and i.get("value") for i in resource.get("identifier") or ())


class IdentityService:
    """Resolver, write listener and staff actions over one node (see module docstring)."""

    def __init__(self, node: Any, config: IdentityConfig | None = None) -> None:
        self.node = node
        self.config = config or IdentityConfig()
        #: Called after rows were re-keyed and the links set: (conn, old key, new key, moved
        #: patient ids; old == new when a link changed its method only). Derived state keyed
        #: by patient (e.g. compiled consent grants) plugs in here.
        self.rekey_listeners: list[RekeyListener] = []
        self.records = Records(node, self.config)
        self.linkage = Linkage(node, self.config, self.records, self.rekey_listeners)

    # -- keys ------------------------------------------------------------------------------

    def patient_key(self, conn: Connection, patient_id: str) -> str:
        """``PatientKeyResolver``: the person key of a local (or regional) Patient id."""
        return keys.resolve(conn, patient_id, self.node.clock.now_us())

    def person_of(self, conn: Connection, pid: str) -> str:
        return keys.person_of(conn, pid)

    def same_person(self, conn: Connection, patient_ids: list[str]) -> list[str]:
        return keys.same_person(conn, patient_ids)

    def lock(self, conn: Connection) -> None:
        keys.lock(conn)

    # -- the write listener ----------------------------------------------------------------

    def __call__(self, repo: Any, results: list[WriteResult]) -> None:
        """``WriteListener``: index, match and link facility-scoped Patients as they are written."""
        if is_internal():
            return
        patients = [r.stored for r in results if r.stored is not None and r.stored.res_type == "Patient"]
        if not patients:
            return
        custodians = store.custodians(repo.conn, [st.res_id for st in patients])
        with fresh([st for st in patients if not st.deleted]):
            self._on_patients(repo, patients, custodians)

    def _on_patients(self, repo: Any, patients: list[Stored], custodians: dict[str, str | None]) -> None:
        conn = repo.conn
        now = self.node.clock.now_us()
        locked = False
        for st in patients:
            if st.deleted:
                store.delete_blocks(conn, st.res_id)
                for item in store.open_items_of(conn, [st.res_id]):
                    store.set_review_status(conn, item.pk, "superseded", SERVICE_ACTOR, now)
                continue
            resource = st.resource()
            link = store.link(conn, st.res_id)
            if (link is not None and link.role == "regional") or not is_facility_scoped(resource):
                continue
            if not locked:
                keys.lock(conn)
                locked = True
            drives = matching.drives_matching(repo.principal, custodians.get(st.res_id))
            self._on_local_patient(conn, st, resource, drives)

    def _on_local_patient(self, conn: Connection, st: Stored, resource: dict[str, Any], drives: bool) -> None:
        pid = st.res_id
        key = self.patient_key(conn, pid)
        person = store.person(conn, key)
        assert person is not None
        features = extract_features(resource)
        if drives:
            store.replace_blocks(conn, pid, st.pk, blocking_keys(features))
        if person.has_patient or len(store.members(conn, key)) > 1 or not drives:
            # Already linked (identity stays a staff decision), or a patient's self-edit, or a
            # writer that is not the custodian: only the link to the person (a replace may
            # have dropped it), in the version just written.
            self.records.sync_local(conn, pid)
            return
        found = self.match(conn, features, exclude={pid}, load=self._load_system,
                           not_same=store.not_a_match(conn, pid))
        decision = matching.decide(found, key, self.config)
        if decision.auto_link is not None:
            m = decision.auto_link
            self.linkage.auto_link(conn, pid, m.person_key, m.patient_id, m.score)
        else:
            now = self.node.clock.now_us()
            for m in decision.review:
                store.enqueue(conn, pid, m.patient_id, m.score.score, m.score.grade, m.score.levels, now)
        # Matched or not, the record reads alike: its link to its person, in this version.
        self.records.sync_local(conn, pid)

    def _load_system(self, conn: Connection, pks: list[int]) -> list[Stored]:
        return self.records.repo(conn).load_pks(pks)

    def match(self, conn: Connection, features: PatientFeatures, *, load: matching.Loader,
              exclude: set[str] | frozenset[str] = frozenset(),
              not_same: set[str] | frozenset[str] = frozenset()) -> list[matching.PersonMatch]:
        return matching.match(conn, features, self.config, load=load, exclude=exclude, not_same=not_same)

    # -- staff actions (authorized by the caller: hie.identity.authz) -------------------------

    def link_at_counter(self, conn: Connection, patient_id: str, *, actor: str, system: str | None = None,
                        value: str | None = None, target: str | None = None) -> ActionResult:
        return self.linkage.link_at_counter(conn, patient_id, actor=actor, system=system, value=value,
                                            target=target)

    def record_identification(self, conn: Connection, patient_id: str, *, actor: str, system: str,
                              value: str) -> ActionResult:
        return self.linkage.record_identification(conn, patient_id, actor=actor, system=system, value=value)

    def unlink(self, conn: Connection, patient_id: str, *, actor: str) -> ActionResult:
        return self.linkage.unlink(conn, patient_id, actor=actor)

    def merge(self, conn: Connection, source: str, target: str, *, actor: str) -> ActionResult:
        return self.linkage.merge(conn, source, target, actor=actor)

    def unmerge(self, conn: Connection, event_pk: int, *, actor: str) -> ActionResult:
        return self.linkage.unmerge(conn, event_pk, actor=actor)

    def decide(self, conn: Connection, item_pk: int, action: str, *, actor: str) -> ActionResult:
        return self.linkage.decide(conn, item_pk, action, actor=actor)

    # -- derived state that follows a re-key --------------------------------------------------

    def follow_consent_grants(self, conn: Connection, old: str, new: str, moved: list[str] | None) -> None:
        """Rekey listener: compiled consent grants (:mod:`hie.enforcement.grants`) are keyed
        by person and depend on the links (a facility's Consent permits only while that
        facility holds the person): the Consents of both persons are compiled again."""
        try:
            from hie.enforcement import grants
        except ImportError:  # consent enforcement not installed
            return
        grants.follow_identity(self.records.repo(conn), [old, new])


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
    raise NotSupported("the identity service is not installed on this node")


