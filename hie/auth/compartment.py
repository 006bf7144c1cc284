"""Patient-context confinement: a token that acts in a patient context reads and writes
only that patient's compartment.

SMART ``patient/`` scopes grant access "to resources in the current patient's
compartment" (the launch patient). Two kinds of principal act in a patient context:

* a patient (``kind="patient"``): always, for every request;
* a clinician (``kind="user"``) with a launch patient, for a request that relies on a
  ``patient/`` scope for any of the permissions it needs (a request fully covered by
  ``user/`` scopes is not confined). :func:`confine` marks such a principal with
  ``patient_compartment`` after the scope check (:func:`hie.auth.bearer.authorize`).
  Confining the whole request rather than some of its types is deliberate: operations
  (``$everything``), ``_include``/``_revinclude`` and compartment searches return types the
  permission check never names.

Two enforcement points, both in the storage layer so no interaction can miss them:

* :class:`CompartmentPolicy` wraps the node's access policy: for a confined principal
  every statement's predicate is the consent predicate AND "the row is about the patient
  (``patient_key`` = the patient's regional key) or is an administrative row about no
  patient". Reads elsewhere answer 404, exactly as the consent predicate does; an update or
  delete of such a row cannot find it either.
* :func:`check_writes`, a repository write listener (same transaction, after the rows are
  written, and the *first* listener: it compares the keys the write itself set, before
  the identity listener could move anything between persons): every row a confined
  principal created, updated or deleted must be about the patient; otherwise the whole
  write is refused with 403 (:class:`OutsideCompartment`) and rolled back. That covers creates
  (whose target is not visible beforehand), updates that move a resource to another
  patient, and the entries of batch and transaction Bundles. Administrative resources
  (Organization, Practitioner, ...) are shared by the region: a patient context may read
  them but not change them.

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#patient-specific-scopes ;
https://hl7.org/fhir/R4/compartmentdefinition-patient.html
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, or_

from consent.classes import ADMINISTRATIVE
from hie.auth.scopes import permits
from hie.errors import Forbidden
from hie.principal import Principal
from hie.storage.access import AccessPolicy, AccessPredicate

Need = tuple[str, str]


class OutsideCompartment(Forbidden):
    """A patient-context write about another patient (or about no patient)."""

    hie_code = "HIE-2003"


def compartment_of(principal: Principal) -> str | None:
    """The Patient id whose compartment ``principal`` is confined to; None if unconfined.
    A patient without a patient id is confined to nothing (the empty string)."""
    if principal.is_system:
        return None
    if principal.patient_compartment:
        return principal.patient_compartment
    if principal.kind == "patient":
        return principal.patient_id or ""
    return None


def relies_on_patient_scopes(principal: Principal, needs: Sequence[Need]) -> bool:
    """Whether a clinician's request needs a ``patient/`` scope for any permission (a
    permission the ``user/`` scopes do not grant)."""
    return any(not permits(principal.scopes, ("user",), t, ch) for t, ch in needs)


def confine(principal: Principal, needs: Sequence[Need]) -> Principal:
    """The principal a request runs as once its scopes were checked: a clinician with a
    launch patient whose request relies on ``patient/`` scopes becomes confined to that
    patient's compartment."""
    if principal.kind == "user" and principal.patient_id and relies_on_patient_scopes(principal, needs):
        return replace(principal, patient_compartment=principal.patient_id)
    if principal.kind == "patient" and principal.patient_compartment is None and principal.patient_id:
        return replace(principal, patient_compartment=principal.patient_id)
    return principal


KeyResolver = Callable[[Connection, str], str]


class CompartmentPolicy:
    """An :class:`~hie.storage.access.AccessPolicy` that narrows ``inner`` to the patient's
    compartment for confined principals and leaves every other principal's predicate as is."""

    _OWN = frozenset({"inner", "_resolver"})

    def __init__(self, inner: AccessPolicy, patient_key: Callable[[], KeyResolver | None]) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "_resolver", patient_key)

    # The wrapped policy stays configurable through the node (clock, resolver, ...).
    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def patient_key(self, conn: Connection | None, patient_id: str) -> str:
        resolver = self._resolver()
        if resolver is None or conn is None:
            return patient_id
        return resolver(conn, patient_id)

    def predicate(self, principal: Principal, conn: Connection | None = None) -> AccessPredicate:
        base = self.inner.predicate(principal, conn)
        pid = compartment_of(principal)
        if pid is None:
            return base
        key = self.patient_key(conn, pid) if pid else None
        built: dict[int, tuple[Any, ColumnElement[bool]]] = {}

        def access(r: Any) -> ColumnElement[bool]:
            hit = built.get(id(r))
            if hit is not None and hit[0] is r:
                return hit[1]
            c = r.c
            shared = and_(c.patient_key.is_(None), c.data_class == ADMINISTRATIVE)
            own = c.patient_key == key if key is not None else false()
            expr = and_(base(r), or_(own, shared))
            built[id(r)] = (r, expr)
            return expr

        return access


def check_writes(repo: Any, results: list[Any]) -> None:
    """Write listener: refuse (403) a confined principal's write of a row that is not
    about its patient. Runs inside the write transaction, so refusing rolls it back."""
    principal: Principal = repo.principal
    pid = compartment_of(principal)
    if pid is None:
        return
    written = [r.stored for r in results if r.stored is not None]
    if not written:
        return
    policy = repo.policy
    key = policy.patient_key(repo.conn, pid) if pid and isinstance(policy, CompartmentPolicy) else (
        repo._patient_key(repo.conn, pid) if pid else None)
    for st in written:
        res_type, patient_key = st.res_type, repo.row_patient_key(st.pk)
        if key is None or patient_key != key:
            about = "no patient" if patient_key is None else "another patient"
            err = OutsideCompartment(
                f"This access token is confined to the compartment of Patient/{pid or '?'}; "
                f"the {res_type} written here is about {about}",
                expression=[res_type],
            )
            err.write_index = None  # type: ignore[attr-defined]  # the listener cannot tell which entry
            raise err


def install(node: Any) -> None:
    """Wrap the node's access policy and add the write check (composition root)."""
    if not isinstance(node.policy, CompartmentPolicy):
        node.policy = CompartmentPolicy(node.policy, lambda: node.patient_key_resolver)
    if check_writes not in node.write_listeners:
        # First: before the identity listener re-keys anything (a patient who copied
        # another person's demographics must be judged by the key the write set).
        node.write_listeners.insert(0, check_writes)
