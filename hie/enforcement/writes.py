"""Write authorization: who may write what (the one write guard).

The access predicate (:mod:`hie.enforcement.policy`) trusts facts set at write time: the
``custodian`` of a row, the Consents compiled into grants, the registry of facilities and
the identity links. Writing those facts is guarded as strictly as reading data, in one
place: :meth:`hie.storage.repository.Repository.write_batch` asks :class:`WriteGuard`
about every write (REST create/update/patch/delete, their conditional forms, batch and
transaction entries, operations that write) before anything is written.

Resource types fall in groups (:func:`group_of`); :data:`RULES` says, per group and
action, which capacities may write. A principal holds a capacity when the named check in
:data:`CAPACITIES` passes; one is enough. The system principal (in-process ingest,
maintenance, the audit recorder) may write everything (custody aside, see below) and is not
listed.

Custody is fixed at creation (:meth:`WriteGuard.custodian_for_create`): the writing
facility, or :data:`PATIENT_SOURCE` for what a patient enters; a ``meta.tag`` custodian that
names anything else is refused unless the system principal writes (feeds name their
facility by tag). Updates keep the stored custodian (:meth:`WriteGuard.custodian_for_update`).
The system principal writes clinical data only into the custody of a facility that may
disclose (or none, or :data:`PATIENT_SOURCE`): grants share what a custodian holds, so a
viewing-only, inactive or unregistered custodian is refused on its writes too. A Consent the
operator creates gets the custodian :data:`OPERATOR_SOURCE`, so the holding rule
(:mod:`hie.enforcement.grants`) can tell it from a facility's by who wrote it.

Existence: an update of an id the writer cannot see is answered exactly like an update of
a free id (404), unless the writer may create with a client-assigned id (system, operator:
:meth:`WriteGuard.may_create_with_id`). See docs/security.md, "Who may write what".

Spec: https://hl7.org/fhir/R4/http.html#update (update as create); SMART scopes only say
*which interactions* a token may use, this module says *which records*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hie.enforcement import facilities
from hie.enforcement.policy import OPERATOR_ROLE
from hie.errors import CustodyForbidden, FhirError, PatientEditForbidden, WriteForbidden
from hie.principal import Principal
from hie.storage.repository import strip_volatile
from hie.storage.rowmeta import custodian_of

REGISTRAR_ROLE = "registrar"

#: The custodian of what a patient entered themself (home measurements, their own
#: Consents). Not a facility code (those have 10 digits), so no facility discloses it.
PATIENT_SOURCE = "patient-source"

#: The custodian of a Consent the operator recorded (set here, at creation, whoever the
#: operator's facility is): the holding rule of :mod:`hie.enforcement.grants` exempts these,
#: identified by who wrote them and never by a facility's network role. Not a facility code.
OPERATOR_SOURCE = "operator-recorded"

#: Elements of their own Patient a patient may change (contact details); any other
#: element that differs from the current version is refused with its path.
PATIENT_EDITABLE = frozenset({"telecom", "address", "contact", "communication"})

#: Types a patient may create about themself (under :data:`PATIENT_SOURCE` custody).
PATIENT_CREATABLE = frozenset({"Observation", "QuestionnaireResponse", "DocumentReference", "Communication"})

CLINICAL, CONSENT, REGISTRY, CONFORMANCE, AUDIT = "clinical", "Consent", "registry", "conformance", "AuditEvent"
CREATE, UPDATE, DELETE = "create", "update", "delete"

REGISTRY_TYPES = frozenset({
    "Organization", "OrganizationAffiliation", "Practitioner", "PractitionerRole", "Endpoint",
    "HealthcareService", "Location",
})

CONFORMANCE_TYPES = frozenset({
    # conformance and terminology
    "CapabilityStatement", "StructureDefinition", "ImplementationGuide", "SearchParameter",
    "MessageDefinition", "OperationDefinition", "CompartmentDefinition", "StructureMap",
    "GraphDefinition", "ExampleScenario", "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem",
    "TerminologyCapabilities", "TestScript", "Subscription",
    # definitional artifacts and knowledge
    "ActivityDefinition", "EventDefinition", "PlanDefinition", "Questionnaire", "Library", "Measure",
    "ObservationDefinition", "SpecimenDefinition", "ResearchDefinition", "ResearchElementDefinition",
    "ChargeItemDefinition", "DeviceDefinition", "MedicationKnowledge", "Evidence", "EvidenceVariable",
    "EffectEvidenceSynthesis", "RiskEvidenceSynthesis", "CatalogEntry",
    "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification",
})


def group_of(res_type: str) -> str:
    """The type group whose rules apply; everything not listed is clinical (custodial) data."""
    if res_type == "Consent":
        return CONSENT
    if res_type == "AuditEvent":
        return AUDIT
    if res_type in REGISTRY_TYPES:
        return REGISTRY
    if res_type in CONFORMANCE_TYPES:
        return CONFORMANCE
    return CLINICAL


_CONSENT_CHANGE = ("operator", "patient: subject", "registrar: holding facility", "registrar: recording facility")

#: Who may write what: (group, action) -> capacities, one of which the writer must hold.
#: The system principal may do everything. "facility" means a registered, active facility
#: of the region (hie.enforcement.facilities); "disclosing" one whose network role is
#: disclosing or both.
RULES: dict[tuple[str, str], tuple[str, ...]] = {
    (CLINICAL, CREATE): ("disclosing facility", "patient: own record"),
    (CLINICAL, UPDATE): ("operator", "disclosing custodian facility", "patient: own record",
                         "patient: contact details of own Patient"),
    (CLINICAL, DELETE): ("operator", "custodian facility", "patient: own record"),
    (CONSENT, CREATE): ("operator", "patient: subject", "registrar: holding facility"),
    (CONSENT, UPDATE): _CONSENT_CHANGE,
    (CONSENT, DELETE): _CONSENT_CHANGE,
    (REGISTRY, CREATE): ("operator",), (REGISTRY, UPDATE): ("operator",), (REGISTRY, DELETE): ("operator",),
    (CONFORMANCE, CREATE): ("operator",), (CONFORMANCE, UPDATE): ("operator",),
    (CONFORMANCE, DELETE): ("operator",),
    (AUDIT, CREATE): (), (AUDIT, UPDATE): (), (AUDIT, DELETE): (),
}


@dataclass(frozen=True)
class StoredFacts:
    """What the guard needs of the current row: its custodian and regional patient key."""

    custodian: str | None
    patient_key: str | None
    content: bytes | None


@dataclass
class Check:
    """One write as the capacities see it."""

    guard: WriteGuard
    action: str
    res_type: str
    resource: dict[str, Any] | None  # the new content (None for a delete)
    stored: StoredFacts | None  # None for a create
    #: A refusal more precise than the generic one (set by a capacity that almost applied).
    specific: FhirError | None = field(default=None)

    @property
    def principal(self) -> Principal:
        return self.guard.principal

    def new_key(self) -> str | None:
        if self.resource is None:
            return self.stored.patient_key if self.stored else None
        return self.guard.key_of(self.resource)

    def old_key(self) -> str | None:
        return self.stored.patient_key if self.stored else None

    def keys(self) -> list[str | None]:
        """The patient keys the write touches: the new version's, and the stored one's."""
        return [self.new_key()] if self.stored is None else [self.new_key(), self.old_key()]


# -- capacities ------------------------------------------------------------------------


def _operator(c: Check) -> bool:
    return OPERATOR_ROLE in c.principal.roles


def _facility(c: Check) -> facilities.Facility | None:
    return c.guard.facility()


def _disclosing_facility(c: Check) -> bool:
    f = _facility(c)
    return f is not None and f.may_disclose


def _custodian_facility(c: Check) -> bool:
    org = c.principal.organization_id
    return bool(org) and c.stored is not None and c.stored.custodian == org and _facility(c) is not None


def _custodian_disclosing(c: Check) -> bool:
    return _custodian_facility(c) and _disclosing_facility(c)


def _own_key(c: Check) -> str | None:
    return c.guard.own_key() if c.principal.kind == "patient" else None


def _patient_own_record(c: Check) -> bool:
    own = _own_key(c)
    if own is None or any(k != own for k in c.keys()):
        return False
    if c.stored is None:
        return c.res_type in PATIENT_CREATABLE
    return c.stored.custodian == PATIENT_SOURCE


def _patient_contact_edit(c: Check) -> bool:
    own = _own_key(c)
    if own is None or c.res_type != "Patient" or c.stored is None or c.stored.content is None:
        return False
    if any(k != own for k in c.keys()) or c.resource is None:
        return False
    changed = changed_elements(orjson.loads(c.stored.content), c.resource) - PATIENT_EDITABLE
    if changed:
        first = sorted(changed)[0]
        c.specific = PatientEditForbidden(
            f"A patient may change only {', '.join(sorted(PATIENT_EDITABLE))} of their Patient; "
            f"Patient.{first} differs from the current version", expression=[f"Patient.{first}"])
        return False
    return True


def _patient_subject(c: Check) -> bool:
    own = _own_key(c)
    return own is not None and all(k == own for k in c.keys())


def _registrar_facility(c: Check) -> str | None:
    if REGISTRAR_ROLE not in c.principal.roles or _facility(c) is None:
        return None
    return c.principal.organization_id


def _registrar_holding(c: Check) -> bool:
    org = _registrar_facility(c)
    return org is not None and all(k is not None and c.guard.holds(org, k) for k in dict.fromkeys(c.keys()))


def _registrar_recording(c: Check) -> bool:
    org = _registrar_facility(c)
    if org is None or c.stored is None or c.stored.custodian != org:
        return False
    new = c.new_key()
    return new == c.old_key() or (new is not None and c.guard.holds(org, new))


CAPACITIES: dict[str, Callable[[Check], bool]] = {
    "operator": _operator,
    "disclosing facility": _disclosing_facility,
    "custodian facility": _custodian_facility,
    "disclosing custodian facility": _custodian_disclosing,
    "patient: own record": _patient_own_record,
    "patient: contact details of own Patient": _patient_contact_edit,
    "patient: subject": _patient_subject,
    "registrar: holding facility": _registrar_holding,
    "registrar: recording facility": _registrar_recording,
}


def changed_elements(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Top-level elements whose value differs (``id`` and the volatile ``meta`` parts aside)."""
    a, b = strip_volatile(old), strip_volatile(new)
    a.pop("id", None)
    b.pop("id", None)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


# -- the guard ---------------------------------------------------------------------------


class WriteGuard:
    """Authorizes the writes of one ``write_batch`` for the repository's principal.

    The repository hands in what the checks look up: its connection (facility directory,
    identity links), ``key`` (local Patient id -> regional key, the batch's cache),
    ``patient_of`` (the local Patient a resource is about) and ``custodial`` (whether any
    of some resources is a current record in a facility's custody)."""

    def __init__(self, principal: Principal, conn: Any, *, key: Callable[[str | None], str | None],
                 patient_of: Callable[[dict[str, Any]], str | None],
                 custodial: Callable[[str, list[str], str], bool]) -> None:
        self.principal = principal
        self._conn = conn
        self._key = key
        self._patient_of = patient_of
        self._custodial = custodial
        self._facility: tuple[facilities.Facility | None] | None = None
        self._own: tuple[str | None] | None = None
        self._holds: dict[tuple[str, str], bool] = {}
        #: Facilities the system registers earlier in this batch (code -> facility), so a feed
        #: may register a facility and store its records in one transaction.
        self._batch_facilities: dict[str, facilities.Facility] = {}

    # lookups, each made at most once per batch
    def facility(self) -> facilities.Facility | None:
        """The writer's facility if it is registered and active."""
        if self._facility is None:
            self._facility = (facilities.lookup(self._conn, self.principal.organization_id),)
        return self._facility[0]

    def own_key(self) -> str | None:
        if self._own is None:
            self._own = (self._key(self.principal.patient_id),)
        return self._own[0]

    def key_of(self, resource: dict[str, Any]) -> str | None:
        return self._key(self._patient_of(resource))

    def holds(self, code: str, key: str) -> bool:
        """Facility ``code`` holds person ``key``: a current Patient in its custody linked to
        the person by a link other than a scored auto-link (a look-alike Patient does not
        count)."""
        hit = self._holds.get((code, key))
        if hit is None:
            from hie.identity.store import vouched_members

            hit = self._holds[(code, key)] = self._custodial("Patient", vouched_members(self._conn, key), code)
        return hit

    # decisions
    @property
    def may_create_with_id(self) -> bool:
        """Update as create with a client-assigned id (otherwise an id the writer cannot see
        answers 404, whether it is free or hidden)."""
        return self.principal.is_system or OPERATOR_ROLE in self.principal.roles

    def authorize(self, action: str, res_type: str, resource: dict[str, Any] | None,
                  stored: StoredFacts | None) -> None:
        """Raise a 403 unless the principal may do ``action`` on this resource."""
        if self.principal.is_system:
            return
        check = Check(self, action, res_type, resource, stored)
        if self.principal.kind == "patient":
            self._confine(check)
        group = group_of(res_type)
        for capacity in RULES[(group, action)]:
            if CAPACITIES[capacity](check):
                return
        if check.specific is not None:
            raise check.specific
        raise WriteForbidden(self._refusal(action, res_type, group, stored), expression=[res_type])

    def _confine(self, c: Check) -> None:
        """A patient writes only about themself: anything else is refused as outside their
        compartment (the answer :mod:`hie.auth.compartment` gives), before any other rule."""
        from hie.auth.compartment import OutsideCompartment

        own = self.own_key()
        stray = next((k for k in c.keys() if own is None or k != own), "")
        if stray == "":
            return
        about = "no patient" if stray is None and c.res_type != "Patient" else "another patient"
        raise OutsideCompartment(
            f"This access token is confined to the compartment of Patient/{self.principal.patient_id or '?'}; "
            f"the {c.res_type} written here is about {about}", expression=[c.res_type])

    def _refusal(self, action: str, res_type: str, group: str, stored: StoredFacts | None) -> str:
        who = RULES[(group, action)]
        allowed = ", ".join(("the system", *who)) if who else "the system"
        text = f"This principal may not {action} {res_type} ({group} data); allowed: {allowed}"
        org = self.principal.organization_id
        if group not in (CLINICAL, CONSENT) or not org:
            return text
        facility = self.facility()
        if facility is None:
            return text + f". Facility {org} is not a registered, active facility of the region"
        if group == CLINICAL and action != DELETE and not facility.may_disclose:
            return text + f". Facility {org} is registered for viewing only: it does not disclose records"
        if group == CLINICAL and stored is not None and stored.custodian != org:
            return text + (". Custody is fixed at creation: only the custodian facility, the operator or the "
                           "system may change or delete a record")
        return text

    def custodian_for_create(self, res_type: str, resource: dict[str, Any]) -> str | None:
        """The custodian of a new row: the writer's (a tag naming another is refused)."""
        tag = custodian_of(resource, None)
        if self.principal.is_system:
            return self._system_custody(res_type, tag or self.principal.organization_id, resource, None)
        own = self._own_custody(res_type)
        if tag is not None and tag != own:
            raise CustodyForbidden(
                f"{res_type}.meta.tag: the custodian tag names {tag}, but a record created by this principal is in "
                f"the custody of {own or 'no facility'}; only the system principal (feeds) may name the custodian",
                expression=[f"{res_type}.meta.tag"])
        return own

    def _own_custody(self, res_type: str) -> str | None:
        """Who holds what this (non-system) principal creates: the patient's own source, the
        operator's marker for a Consent the operator records, else the writer's facility."""
        if self.principal.kind == "patient":
            return PATIENT_SOURCE
        if res_type == "Consent" and OPERATOR_ROLE in self.principal.roles:
            return OPERATOR_SOURCE
        return self.principal.organization_id

    def custodian_for_update(self, res_type: str, resource: dict[str, Any], stored: StoredFacts) -> str | None:
        """The custodian of an updated row: the stored one (the system principal may re-home
        a record by tag, as feeds name their facility)."""
        tag = custodian_of(resource, None)
        if self.principal.is_system:
            return self._system_custody(res_type, tag or stored.custodian, resource, stored)
        if tag is not None and tag != stored.custodian:
            raise CustodyForbidden(
                f"{res_type}.meta.tag: custody is fixed at creation; the custodian tag may not change from "
                f"{stored.custodian or 'none'} to {tag}", expression=[f"{res_type}.meta.tag"])
        return stored.custodian

    def _system_custody(self, res_type: str, custodian: str | None, resource: dict[str, Any],
                        stored: StoredFacts | None) -> str | None:
        """The custodian a system write (a feed names its facility by tag) gives clinical data,
        refused unless it is none, the patient's own source, or a registered, active facility
        that may disclose: records in the custody of a viewing-only or inactive facility, or
        of a code nobody registered, would otherwise be shared through consent grants. An
        update that changes only ``link`` (identity's maintenance of a Patient stored before
        its facility stopped disclosing) discloses nothing new and passes."""
        if res_type == "Organization":
            registered = facilities.facility_of(str(resource.get("id") or ""), resource)
            if registered is not None:
                self._batch_facilities[registered.code] = registered
        if group_of(res_type) != CLINICAL or custodian in (None, PATIENT_SOURCE):
            return custodian
        facility = self._batch_facilities.get(custodian) or facilities.lookup(self._conn, custodian)
        if facility is not None and facility.may_disclose:
            return custodian
        facility = facility if facility is not None and facility.active else None
        if stored is not None and stored.content is not None and stored.custodian == custodian and \
                changed_elements(orjson.loads(stored.content), resource) <= {"link"}:
            return custodian
        why = ("is registered for viewing only: it does not disclose records" if facility is not None
               else "is not a registered, active facility of the region")
        raise CustodyForbidden(
            f"{res_type}.meta.tag: the custodian {custodian} {why}; its {res_type} is not stored, "
            "since records in its custody would be shared under consent", expression=[f"{res_type}.meta.tag"])
