"""Who may do which identity work, and answering hidden ids like unknown ones.

Identity links decide who sees what (the access predicate joins on the person key), so
changing them is guarded like reading data:

* **Region-wide** identity work -- links across facilities, the whole review queue,
  merge and unmerge -- is the operator's (role ``operator``) and the system principal's
  (feeds, ``hie identity`` on the command line). Each action is an ``identity_event``
  naming the actor and the authority it acted with, besides the request's AuditEvent.
* **Facility** identity staff (role ``identity-staff`` with the facility of their login)
  act only on their facility's records (custodian = their facility): link two of their
  own records when both persons hold only their facility's records, unlink their record,
  record an identification seen at the counter (the region's review queue then proposes
  it to the operator; the answer does not depend on who else holds it), and see and
  decide review items whose two records are both theirs.
* Everybody else, anonymous and unknown principals included, is refused (fail closed).

A Patient or review item the caller may not see answers exactly like one that does not
exist: records are looked up through the caller's repository (the access predicate), and
the same :class:`~hie.errors.NotFound` text is raised for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection

from hie.errors import NotFound
from hie.identity import keys, store
from hie.identity.model import IdentityForbidden
from hie.principal import Principal

STAFF_ROLE: Final = "identity-staff"
OPERATOR_ROLE: Final = "operator"
#: Roles that may link, unlink and decide reviews (besides system principals).
STAFF_ROLES: Final = frozenset({STAFF_ROLE, OPERATOR_ROLE})


def actor_of(principal: Principal) -> str:
    return principal.user_id or principal.client_id or principal.name


@dataclass(frozen=True)
class Authority:
    """What identity work a principal may do: region-wide (``facility`` None) or one facility's."""

    principal: Principal
    facility: str | None
    basis: str  # system | operator | identity-staff@<facility code>

    @property
    def region_wide(self) -> bool:
        return self.facility is None

    @property
    def actor(self) -> str:
        """Who acted, as the event log records it (the authority in brackets)."""
        who = actor_of(self.principal)
        return who if self.basis == "system" else f"{who} ({self.basis})"


def require_staff(principal: Principal) -> Authority:
    """The caller's identity authority; 403 for anyone else (anonymous included)."""
    if principal.is_system:
        return Authority(principal, None, "system")
    if principal.kind in ("user", "client"):
        if OPERATOR_ROLE in principal.roles:
            return Authority(principal, None, "operator")
        if STAFF_ROLE in principal.roles and principal.organization_id:
            org = principal.organization_id
            return Authority(principal, org, f"{STAFF_ROLE}@{org}")
    raise IdentityForbidden(f"identity changes need the {OPERATOR_ROLE} role, or the {STAFF_ROLE} role "
                            "at a facility")


def require_region_wide(auth: Authority, what: str) -> None:
    if not auth.region_wide:
        raise IdentityForbidden(f"{what} is region-wide identity work (the {OPERATOR_ROLE} role)")


def own_record(repo: Any, auth: Authority, pid: str) -> None:
    """``pid`` is a record ``auth`` may act on. Facility staff: visible through the
    caller's repository (404 otherwise, as for an unknown id) and in the facility's custody
    (403 otherwise). Region-wide callers: no check here (unknown ids are 404 later)."""
    if auth.region_wide:
        return
    st = repo.current("Patient", pid)
    if st is None or st.deleted:
        raise NotFound(f"Patient/{pid} is not known")
    if store.custodians(repo.conn, [pid]).get(pid) != auth.facility:
        raise IdentityForbidden(f"identity staff of a facility act only on that facility's records; "
                                f"Patient/{pid} is in another facility's custody")


def within_facility(conn: Connection, auth: Authority, patient_ids: Iterable[str]) -> None:
    """Facility staff link only inside their facility: every local record of the persons
    of ``patient_ids`` must be in the facility's custody."""
    if auth.region_wide:
        return
    persons = {keys.person_of(conn, pid) for pid in patient_ids}
    members = [ln.patient_id for key in sorted(persons) for ln in store.members(conn, key)]
    custody = store.custodians(conn, members)
    if any(custody.get(pid) != auth.facility for pid in members):
        raise IdentityForbidden(f"linking records of different facilities is region-wide identity work "
                                f"(the {OPERATOR_ROLE} role)")


def _item_visible(conn: Connection, auth: Authority, item: store.ReviewItem) -> bool:
    if auth.region_wide:
        return True
    custody = store.custodians(conn, [item.patient_id, item.candidate_id])
    return custody.get(item.patient_id) == auth.facility and custody.get(item.candidate_id) == auth.facility


def review_items(conn: Connection, auth: Authority, status: str | None, limit: int) -> list[store.ReviewItem]:
    """The review queue as ``auth`` may see it (facility staff: items about two of their records)."""
    if auth.facility is None:  # region-wide
        return store.review_items(conn, status, limit)
    return store.review_items_in_custody(conn, auth.facility, status, limit)


def review_item(conn: Connection, auth: Authority, pk: int) -> store.ReviewItem:
    """A review item ``auth`` may decide; one it may not see answers like an unknown one."""
    item = store.review_item(conn, pk)
    if item is None or not _item_visible(conn, auth, item):
        raise NotFound(f"review item {pk} is not known")
    return item
