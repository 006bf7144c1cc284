"""The Patient resources identity writes: local ``refer`` links and the regional Patient.

Links go both ways in the master-record pattern of
https://hl7.org/fhir/R4/patient.html#links, but only one way is *stored*: each local record
carries ``refer`` to its person's regional Patient (the local record's own visibility
decides who sees it) -- every local record, also before its person has a regional Patient,
and in the version its facility wrote, so the record never tells its facility whether
matching found someone (docs/identity.md, "No existence oracle"). The stored regional
Patient lists no local records -- its readers would otherwise learn ids of records they
may not see, label-protected ones included (ids that can be reversed to a facility and
patient number). :func:`regional_view` builds the regional Patient with ``seealso`` links
for one caller, through the caller's repository, so it lists exactly the local records
that caller may see.

Resources are written through :class:`hie.storage.repository.Repository` as a system
principal acting for the record's custodian, so custodian and data class stay what the
facility disclosed; the identity write listener ignores these writes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection

from hie.identity import store
from hie.storage.amend import amend_fresh_version
from hie.identity.features import INSURANCE_MEMBER_ID_SYSTEM
from hie.identity.model import IDENTITY_TAG_SYSTEM, SERVICE_ACTOR, IdentityConfig
from hie.principal import Principal
from hie.storage.repository import Stored, Write

_INTERNAL: contextvars.ContextVar[bool] = contextvars.ContextVar("hie_identity_internal", default=False)
#: Local Patients a facility's write created a version of in the write listener's current
#: call: their ``refer`` link goes into that version (:mod:`hie.storage.amend`).
_FRESH: contextvars.ContextVar[dict[str, Stored] | None] = contextvars.ContextVar("hie_identity_fresh", default=None)


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """Writes inside are identity's own (the write listener ignores them)."""
    token = _INTERNAL.set(True)
    try:
        yield
    finally:
        _INTERNAL.reset(token)


def is_internal() -> bool:
    return _INTERNAL.get()


@contextlib.contextmanager
def fresh(versions: list[Stored]) -> Iterator[None]:
    """Inside, a ``refer`` link change of one of ``versions`` (just written by a facility)
    amends that version instead of writing another one."""
    token = _FRESH.set({st.res_id: st for st in versions})
    try:
        yield
    finally:
        _FRESH.reset(token)


def _fresh_version(pid: str, current: Stored) -> Stored | None:
    st = (_FRESH.get() or {}).get(pid)
    return st if st is not None and st.pk == current.pk and st.version_id == current.version_id else None


def ref_id(ref: Any, res_type: str = "Patient") -> str | None:
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


def regional_view(repo: Any, resource: dict[str, Any]) -> dict[str, Any]:
    """A regional Patient as ``repo``'s principal may see it: ``seealso`` links to the
    person's local records that principal can read, none to the others."""
    key = resource.get("id")
    if not isinstance(key, str) or resource.get("active") is False:
        return resource
    locals_ = [ln.patient_id for ln in store.members(repo.conn, key)]
    seen = repo.current_many([("Patient", pid) for pid in locals_]) if locals_ else {}
    links = [{"other": {"reference": f"Patient/{pid}"}, "type": "seealso"} for pid in locals_
             if (st := seen.get(("Patient", pid))) is not None and not st.deleted]
    kept = [ln for ln in resource.get("link") or () if isinstance(ln, dict) and ln.get("type") != "seealso"]
    out = {k: v for k, v in resource.items() if k != "link"}
    if links + kept:
        out["link"] = links + kept
    return out


class Records:
    """Writes identity's Patient resources on one node."""

    def __init__(self, node: Any, config: IdentityConfig) -> None:
        self.node = node
        self.config = config

    def repo(self, conn: Connection, organization: str | None = None) -> Any:
        principal = Principal(kind="system", name=SERVICE_ACTOR, organization_id=organization)
        return self.node.repository(conn, principal)

    def write(self, conn: Connection, res_id: str, body: dict[str, Any], version: int | None) -> None:
        custodian = store.custodians(conn, [res_id]).get(res_id)
        with internal():
            self.repo(conn, custodian).write_batch(
                [Write("update", "Patient", res_id, body, if_match=version, method="PUT")])

    def sync_local(self, conn: Connection, pid: str) -> None:
        """Local Patient: exactly one ``refer`` link, to its person (``Patient/<person key>``,
        also while the person has no regional Patient yet: every local record reads alike,
        whether it matched someone or nobody). A record a facility has just written gets the
        link in that version (no second version, see :mod:`hie.storage.amend`)."""
        st = self.repo(conn).current("Patient", pid)
        link = store.link(conn, pid)
        if st is None or st.deleted or link is None or link.role != "local":
            return
        res = st.resource()
        old_links = [ln for ln in res.get("link") or () if isinstance(ln, dict)]
        keep = [ln for ln in old_links if not (ln.get("type") == "refer" and self._ours(conn, ln))]
        keep.append({"other": {"reference": f"Patient/{link.person_key}"}, "type": "refer"})
        if keep == old_links:
            return
        body = {k: v for k, v in res.items() if k != "link"}
        body["link"] = keep
        just_written = _fresh_version(pid, st)
        if just_written is not None:
            amend_fresh_version(conn, self.repo(conn).registry, just_written, body)
        else:
            self.write(conn, pid, body, st.version_id)

    @staticmethod
    def _ours(conn: Connection, link: dict[str, Any]) -> bool:
        """A ``refer`` link identity maintains: to a person key (regional Patient or not)."""
        target = ref_id(link.get("other"))
        return target is not None and store.person(conn, target) is not None

    def regional_body(self, conn: Connection, person: store.Person, current: dict[str, Any] | None,
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
        repo = self.repo(conn)
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
        links = [{"other": {"reference": f"Patient/{k}"}, "type": "replaces"}
                 for k in store.merged_into(conn, person.person_key)
                 if (p := store.person(conn, k)) is not None and p.has_patient]
        if links:
            body["link"] = links
        return body

    def sync_person(self, conn: Connection, key: str) -> None:
        """Regional Patient of ``key`` (if it has one) and its locals' ``refer`` links."""
        person = store.person(conn, key)
        if person is None or not person.has_patient:
            return
        locals_ = store.members(conn, key)
        st = self.repo(conn).current("Patient", key)
        current = st.resource() if st is not None and not st.deleted else None
        body = self.regional_body(conn, person, current, locals_)
        self.write(conn, key, body, st.version_id if st is not None else None)
        for ln in locals_:
            self.sync_local(conn, ln.patient_id)

    def ensure_regional(self, conn: Connection, key: str) -> None:
        person = store.person(conn, key)
        assert person is not None
        if person.has_patient:
            return
        # The link row first: the resolver then keys the regional Patient's rows by the person.
        store.set_link(conn, key, key, method="regional", by=SERVICE_ACTOR, now=self.node.clock.now_us(),
                       role="regional")
        store.update_person(conn, key, has_patient=True)
