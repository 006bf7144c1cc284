"""Linkage: moving local records between regional persons, and the event log.

Link (auto, review, counter), unlink, merge and unmerge each change ``identity_link``,
re-key the moved records' rows in the same transaction (:mod:`hie.identity.rekey`),
rewrite the Patients identity maintains (:mod:`hie.identity.records`) and write one
``identity_event`` row with actor, time and the keys before and after (unlink is the
inverse of a link, unmerge the inverse of a merge). Who may ask for which action is
decided before, by :mod:`hie.identity.authz`.

Derived state keyed by person (compiled consent grants) follows through the re-key
listeners, called once the links are set (:meth:`Linkage.followed`): the consent compiler
decides with the links as they are after the change (a counter or review link makes a
facility's Consent effective, an auto link does not), also when a link changes its method
without moving the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from hie.errors import InvalidRequest, NotFound
from hie.identity import keys, store
from hie.identity.features import INSURANCE_MEMBER_ID_SYSTEM, parse_member_id
from hie.identity.model import ActionResult, IdentityConfig, IdentityConflict
from hie.identity.records import Records
from hie.identity.rekey import RekeyCount, rekey_all, rekey_patients

RekeyListener = Callable[[Connection, str, str, list[str] | None], None]


class Linkage:
    """Link changes on one node (used by :class:`hie.identity.service.IdentityService`)."""

    def __init__(self, node: Any, config: IdentityConfig, records: Records,
                 rekey_listeners: list[RekeyListener]) -> None:
        self.node = node
        self.config = config
        self.records = records
        self.rekey_listeners = rekey_listeners

    def now(self) -> int:
        return self.node.clock.now_us()

    # -- the primitive: one record into a person ------------------------------------------

    def rekey(self, conn: Connection, old: str, new: str, moving: list[str]) -> RekeyCount:
        """Move the stored rows of ``moving`` (local Patient ids) from ``old`` to ``new``.
        The caller sets the links, then calls :meth:`followed`."""
        everyone = {ln.patient_id for ln in store.members(conn, old, role=None)}
        whole = everyone <= set(moving)
        return rekey_all(conn, old, new) if whole else rekey_patients(conn, old, moving, new)

    def followed(self, conn: Connection, old: str, new: str, moved: list[str]) -> None:
        """The re-key listeners, after the links changed (``old`` may equal ``new``: a link
        changed its method only)."""
        for listener in self.rekey_listeners:
            listener(conn, old, new, list(moved))

    def link_into(self, conn: Connection, pid: str, target: str, *, method: str, action: str, actor: str,
                  score: float | None = None, detail: dict[str, Any] | None = None) -> ActionResult:
        link = store.link(conn, pid)
        assert link is not None
        old = link.person_key
        target_person = store.person(conn, target)
        if target_person is None or target_person.status != "active":
            raise IdentityConflict(f"regional person {target} is not active")
        now = self.now()
        result = ActionResult(action, None, target)
        if old != target:
            result.rekeyed = self.rekey(conn, old, target, [pid])
            result.moved[pid] = (old, target)
        store.set_link(conn, pid, target, method=method, by=actor, now=now, score=score)
        self.followed(conn, old, target, [pid])
        result.event = store.log_event(conn, at=now, actor=actor, action=action, patient_id=pid, from_key=old,
                                       to_key=target, detail={"method": method, "previous_method": link.method,
                                                              **(detail or {})})
        self.records.ensure_regional(conn, target)
        self.supersede_resolved(conn, pid, actor, now)
        self.records.sync_person(conn, target)
        if old != target:
            self.records.sync_person(conn, old)
            self.records.sync_local(conn, pid)
        return result

    def supersede_resolved(self, conn: Connection, pid: str, actor: str, now: int) -> None:
        """Open review items whose two records now belong to one person are done."""
        key = store.person_key_of(conn, pid)
        mates = {ln.patient_id for ln in store.members(conn, key)} if key else set()
        for item in store.open_items_of(conn, mates):
            if item.patient_id in mates and item.candidate_id in mates:
                store.set_review_status(conn, item.pk, "superseded", actor, now)

    def local(self, conn: Connection, pid: str) -> store.Link:
        """The link of a stored local Patient (404 for an unknown or deleted id)."""
        st = self.records.repo(conn).current("Patient", pid)
        if st is None or st.deleted:
            raise NotFound(f"Patient/{pid} is not known")
        keys.resolve(conn, pid, self.now())
        link = store.link(conn, pid)
        assert link is not None
        if link.role != "local":
            raise InvalidRequest(f"Patient/{pid} is a regional person, not a facility's patient record")
        return link

    # -- the write listener's decisions ---------------------------------------------------

    def auto_link(self, conn: Connection, pid: str, person_key: str, candidate: str, score: Any) -> None:
        self.link_into(conn, pid, person_key, method="auto", action="auto-link", actor="identity-service",
                       score=score.score, detail={"candidate": candidate, "score": score.score,
                                                  "levels": score.levels})

    # -- counter links ---------------------------------------------------------------------

    def link_at_counter(self, conn: Connection, patient_id: str, *, actor: str, system: str | None = None,
                        value: str | None = None, target: str | None = None) -> ActionResult:
        """Deterministic link: staff saw the patient's identification (insured-person id
        ``insurer:symbol:number:branch`` or the regional card number), or chose the
        regional person (``target``: a Patient id, regional or local)."""
        keys.lock(conn)
        link = self.local(conn, patient_id)
        detail: dict[str, Any] = {}
        if target:
            dest = keys.person_of(conn, target)
            detail["target"] = target
        elif system == self.config.regional_system and value:
            detail["identifier"] = {"system": system, "value": value}
            dest = self._card_holder(conn, link, value)
        elif system == INSURANCE_MEMBER_ID_SYSTEM and value:
            dest, ins_key = self._insured_holder(conn, link, value)
            detail["identifier"] = {"system": system, "value": ins_key}
        else:
            raise InvalidRequest("$link needs an identifier (insured-person id or regional card number) or a target",
                                 expression=["identifier"])
        return self.link_into(conn, patient_id, dest, method="counter", action="counter-link", actor=actor,
                              detail=detail)

    def _card_holder(self, conn: Connection, link: store.Link, value: str) -> str:
        owners = {keys.active(conn, p.person_key) for p in store.persons_by_regional_id(conn, value)}
        if len(owners) > 1:
            raise IdentityConflict(f"regional card number {value} belongs to {len(owners)} persons; merge them")
        if owners:
            return owners.pop()
        own = store.person(conn, link.person_key)
        assert own is not None
        if own.regional_id in (None, value):
            dest = own.person_key
        else:  # the record carries another person's card: it gets a person of its own
            dest = store.new_person_key()
            store.create_person(conn, dest, self.now())
        store.update_person(conn, dest, regional_id=value)
        return dest

    def _insured_holder(self, conn: Connection, link: store.Link, value: str) -> tuple[str, str]:
        key = self.verified_key(value)
        holders = store.patients_with_key(conn, key)
        owners = {keys.person_of(conn, p) for p in holders if p != link.patient_id}
        owners.discard(link.person_key)
        if len(owners) > 1:
            raise IdentityConflict(f"insured-person id {key[3:]} appears on records of {len(owners)} regional "
                                   "persons; review and merge them first")
        self._add_verified(conn, link.patient_id, key)
        return (owners.pop() if owners else link.person_key), key[3:]

    @staticmethod
    def verified_key(value: str) -> str:
        ins = parse_member_id(value)
        if ins is None or not ins.branch:
            raise InvalidRequest("an insured-person id needs insurer:symbol:number:branch (the branch number "
                                 "tells family members apart)", expression=["identifier"])
        return "in:" + ins.key

    def _add_verified(self, conn: Connection, pid: str, key: str) -> None:
        st = self.records.repo(conn).current("Patient", pid)
        assert st is not None
        store.add_verified_block(conn, pid, st.pk, key)

    def record_identification(self, conn: Connection, patient_id: str, *, actor: str, system: str,
                              value: str) -> ActionResult:
        """A facility's staff saw the patient's identification: it is kept on the record
        (a verified blocking key) and every other person holding the same one is proposed
        to the region's review queue. Nothing is linked and the answer is the same whoever
        else holds the identification (the operator decides links across facilities)."""
        keys.lock(conn)
        link = self.local(conn, patient_id)
        key = self.verified_key(value) if system == INSURANCE_MEMBER_ID_SYSTEM else "rc:" + value
        self._add_verified(conn, patient_id, key)
        now = self.now()
        for other in sorted(store.patients_with_key(conn, key)):
            if other != patient_id and keys.person_of(conn, other) != link.person_key:
                store.enqueue(conn, patient_id, other, self.config.thresholds.auto_link, "certain",
                              {"verified-identifier": "agree"}, now)
        event = store.log_event(conn, at=now, actor=actor, action="identification", patient_id=patient_id,
                                from_key=link.person_key, to_key=link.person_key,
                                detail={"identifier": {"system": system}})
        return ActionResult("identification-recorded", event, None)

    # -- unlink, merge, unmerge, review ----------------------------------------------------

    def unlink(self, conn: Connection, patient_id: str, *, actor: str) -> ActionResult:
        """Take a local patient out of its regional person (the inverse of a link). It goes
        back to the person it had before the link if that one is empty, else to a new one;
        the pairs with the remaining records are remembered as not-a-match."""
        keys.lock(conn)
        link = self.local(conn, patient_id)
        key = link.person_key
        person = store.person(conn, key)
        assert person is not None
        mates = [ln.patient_id for ln in store.members(conn, key) if ln.patient_id != patient_id]
        if not mates and not person.has_patient:
            raise InvalidRequest(f"Patient/{patient_id} is not linked to a regional person")
        now = self.now()
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
        result.rekeyed = self.rekey(conn, key, dest, [patient_id])
        result.moved[patient_id] = (key, dest)
        store.set_link(conn, patient_id, dest, method="own", by=actor, now=now)
        self.followed(conn, key, dest, [patient_id])
        for mate in mates:
            store.record_decision(conn, patient_id, mate, "not-a-match", actor, now)
        result.event = store.log_event(conn, at=now, actor=actor, action="unlink", patient_id=patient_id,
                                       from_key=key, to_key=dest,
                                       detail={"previous_method": link.method, "not_a_match": mates,
                                               "reverses": previous.pk if previous else None})
        if previous:
            store.mark_reversed(conn, previous.pk, result.event)
        self.records.sync_local(conn, patient_id)
        self.records.sync_person(conn, key)
        return result

    def merge(self, conn: Connection, source: str, target: str, *, actor: str) -> ActionResult:
        """Merge regional person ``source`` into ``target`` (Patient ids, regional or local).
        The event keeps the pre-merge mapping; :meth:`unmerge` restores it."""
        keys.lock(conn)
        src, dst = keys.person_of(conn, source), keys.person_of(conn, target)
        if src == dst:
            raise InvalidRequest(f"Patient/{source} and Patient/{target} are already the same regional person")
        now = self.now()
        moved = store.members(conn, src, role=None)
        result = ActionResult("merge", None, dst)
        result.rekeyed = self.rekey(conn, src, dst, [ln.patient_id for ln in moved])
        for ln in moved:
            store.set_link(conn, ln.patient_id, dst, method=ln.method, by=ln.linked_by, now=ln.linked_at,
                           score=ln.score, role=ln.role)
            result.moved[ln.patient_id] = (src, dst)
        self.followed(conn, src, dst, [ln.patient_id for ln in moved])
        store.update_person(conn, src, status="merged", merged_into=dst)
        result.event = store.log_event(conn, at=now, actor=actor, action="merge", patient_id=None, from_key=src,
                                       to_key=dst, detail={"mapping": {ln.patient_id: ln.person_key for ln in moved},
                                                           "source": source, "target": target})
        self.records.ensure_regional(conn, dst)
        for ln in moved:
            self.supersede_resolved(conn, ln.patient_id, actor, now)
        self.records.sync_person(conn, src)
        self.records.sync_person(conn, dst)
        return result

    def unmerge(self, conn: Connection, event_pk: int, *, actor: str) -> ActionResult:
        """Undo a merge: the records that came from the source person go back to it."""
        keys.lock(conn)
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
        now = self.now()
        current = store.links(conn, ev.detail["mapping"])
        back = [pid for pid, ln in current.items() if ln.person_key == dst]
        result = ActionResult("unmerge", None, src)
        result.rekeyed = self.rekey(conn, dst, src, back)
        for pid in back:
            ln = current[pid]
            store.set_link(conn, pid, src, method=ln.method, by=ln.linked_by, now=ln.linked_at, score=ln.score,
                           role=ln.role)
            result.moved[pid] = (dst, src)
        self.followed(conn, dst, src, back)
        store.update_person(conn, src, status="active", merged_into=None)
        not_restored = sorted(set(ev.detail["mapping"]) - set(back))
        result.event = store.log_event(conn, at=now, actor=actor, action="unmerge", patient_id=None, from_key=dst,
                                       to_key=src, detail={"reverses": event_pk, "restored": back,
                                                           "not_restored": not_restored})
        store.mark_reversed(conn, event_pk, result.event)
        self.records.sync_person(conn, src)
        self.records.sync_person(conn, dst)
        return result

    def decide(self, conn: Connection, item_pk: int, action: str, *, actor: str) -> ActionResult:
        """Resolve a review item: ``link`` (same person) or ``not-a-match`` (remembered)."""
        keys.lock(conn)
        item = store.review_item(conn, item_pk)
        if item is None:
            raise NotFound(f"review item {item_pk} is not known")
        if item.status != "open":
            raise IdentityConflict(f"review item {item_pk} was already resolved ({item.status})")
        now = self.now()
        if action == "not-a-match":
            store.set_review_status(conn, item_pk, "not-a-match", actor, now)
            ev = store.log_event(conn, at=now, actor=actor, action="not-a-match", patient_id=item.patient_id,
                                 from_key=None, to_key=None, detail={"item": item_pk, "candidate": item.candidate_id})
            return ActionResult("not-a-match", ev, None)
        if action != "link":
            raise InvalidRequest(f"unknown review action {action!r} (link | not-a-match)", expression=["action"])
        a, b = keys.person_of(conn, item.patient_id), keys.person_of(conn, item.candidate_id)
        detail = {"item": item_pk, "candidate": item.candidate_id, "score": item.score}
        if a == b:
            result = ActionResult("review-link", None, a)
        elif self.alone(conn, a, item.patient_id):
            result = self.link_into(conn, item.patient_id, b, method="review", action="review-link", actor=actor,
                                    score=item.score, detail=detail)
        elif self.alone(conn, b, item.candidate_id):
            result = self.link_into(conn, item.candidate_id, a, method="review", action="review-link",
                                    actor=actor, score=item.score, detail=detail)
        else:
            result = self.merge(conn, item.patient_id, item.candidate_id, actor=actor)
        store.set_review_status(conn, item_pk, "linked", actor, now)
        return result

    def alone(self, conn: Connection, key: str, pid: str) -> bool:
        person = store.person(conn, key)
        return person is not None and not person.has_patient and [
            ln.patient_id for ln in store.members(conn, key, role=None)] == [pid]
