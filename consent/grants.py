"""Compile Consents into GRANTS: flat rows the storage layer's access predicate joins.

Implements the enforcement side of the node's Consent profile on base R4 Consent
(https://hl7.org/fhir/R4/consent.html). Each rule of an ``active`` consent becomes the
Cartesian product of its effective scope (:class:`consent.scope.Scope`: its own conditions
intersected with its ancestors'): one :class:`Grant` per (viewer, data class, label, purpose).
A consent that is not active compiles to no rows; the storage layer replaces all rows of a
consent id whenever that Consent is written, so revoking (status ``inactive``) removes them.

Grant fields
------------
``consent_id``, ``patient`` (regional patient key), ``effect`` ('permit' | 'deny'),
``viewer_org`` ('*' = any participating facility), ``viewer_practitioner`` ('*' = any),
``data_class`` ('*' = all), ``security_label`` ('' = ordinary data; a v3-ActCode sensitivity
code; '*' = any labels, only ever on deny rows), ``purpose`` ('*' or a v3-ActReason code),
``data_from``/``data_to`` (dataPeriod; NULL = open), ``valid_from``/``valid_to`` (provision
period; NULL = open), and ``provision_path`` (for explanations and audit only).
Periods are closed intervals: ``from <= t <= to``. :meth:`Grant.as_row` renders times as UTC
text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that text comparison orders them on SQLite too.

SQL semantics the storage layer must implement
----------------------------------------------
For a viewer ``:org`` (NULL for patients / anonymous), ``:practitioner`` (NULL if unknown), the
request's purposes ``:purposes`` = :func:`consent.vocab.purpose_closure` (the purpose and its
ancestors, e.g. ETREAT -> ETREAT, TREAT) and ``:now``; for a stored row ``r`` with
``r.patient_key``, ``r.custodian_org``, ``r.data_class``, ``r.clinical_date`` (NULL if undated)
and its sensitive labels in ``resource_label(resource_id, label)`` (only
:data:`consent.vocab.SENSITIVE_LABELS` codes are stored there)::

    match(g, r) :=
          g.patient = r.patient_key
      AND g.viewer_org IN ('*', :org)
      AND g.viewer_practitioner IN ('*', :practitioner)      -- NULL practitioner: only '*'
      AND g.data_class IN ('*', r.data_class)
      AND g.purpose IN ('*', :purposes...)
      AND (g.valid_from IS NULL OR g.valid_from <= :now)
      AND (g.valid_to   IS NULL OR :now <= g.valid_to)
      AND (  (r.clinical_date IS NULL
              AND (g.effect = 'deny' OR (g.data_from IS NULL AND g.data_to IS NULL)))
          OR (r.clinical_date IS NOT NULL
              AND (g.data_from IS NULL OR g.data_from <= r.clinical_date)
              AND (g.data_to   IS NULL OR r.clinical_date <= g.data_to)))

    visible(r) :=
         (:may_disclose AND r.custodian_org = :org)
      OR (:org IS NOT NULL AND :may_view
          AND r.data_class NOT IN ('consent', 'audit')
          AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.effect = 'deny' AND match(g, r)
                          AND (g.security_label = '*'
                               OR g.security_label IN (SELECT l.label FROM resource_label l
                                                       WHERE l.resource_id = r.id)))
          AND CASE WHEN EXISTS (SELECT 1 FROM resource_label l WHERE l.resource_id = r.id)
              -- every sensitive label needs its own permit
              THEN NOT EXISTS (SELECT 1 FROM resource_label l WHERE l.resource_id = r.id
                               AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.effect = 'permit'
                                               AND g.security_label = l.label AND match(g, r)))
              -- ordinary data needs an ordinary permit
              ELSE EXISTS (SELECT 1 FROM grants g WHERE g.effect = 'permit'
                           AND g.security_label = '' AND match(g, r))
              END)

``:may_view`` / ``:may_disclose``: the viewer facility is registered, active and its network
role is viewing/both resp. disclosing/both (the node's facility directory). A facility that
may not view gets no grant at all — so a consent without actors ("any participating
facility") only ever reaches registered viewing facilities. Consent and audit rows are never
granted: a viewer facility does not see a patient's Consents (they name the facilities the
patient excluded); the patient, the recording facility (custodian) and the operator do.

An undated resource is outside every permit row that has a data period and inside every deny
row, so missing dates never widen access. Patients viewing their own record, break-the-glass
and disaster mode are separate branches of the predicate (:mod:`consent.decision`,
:mod:`consent.policy`), not rows of this table.

:func:`grants_permit` is the reference implementation of ``visible`` in Python; the tests
prove it agrees with :func:`consent.decision.decide` on every case. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from consent.classes import AUDIT, CONSENT
from consent.errors import ConsentError
from consent.model import Consent, Provision
from consent.request import AccessRequest
from consent.scope import ANY, Scope
from consent.vocab import purpose_closure

ORDINARY = ""
NEVER_GRANTED = frozenset({CONSENT, AUDIT})
"""Data classes no consent grant reaches (see the module docstring)."""


@dataclass(frozen=True, order=True)
class Grant:
    consent_id: str
    patient: str
    effect: Literal["permit", "deny"]
    viewer_org: str
    viewer_practitioner: str
    data_class: str
    security_label: str
    purpose: str
    data_from: datetime | None
    data_to: datetime | None
    valid_from: datetime | None
    valid_to: datetime | None
    provision_path: str

    def as_row(self) -> dict[str, Any]:
        """The row as plain values for an INSERT (times as sortable UTC text)."""
        return {
            "consent_id": self.consent_id,
            "patient": self.patient,
            "effect": self.effect,
            "viewer_org": self.viewer_org,
            "viewer_practitioner": self.viewer_practitioner,
            "data_class": self.data_class,
            "security_label": self.security_label,
            "purpose": self.purpose,
            "data_from": utc_text(self.data_from),
            "data_to": utc_text(self.data_to),
            "valid_from": utc_text(self.valid_from),
            "valid_to": utc_text(self.valid_to),
            "provision_path": self.provision_path,
        }


def utc_text(moment: datetime | None) -> str | None:
    """``moment`` as fixed-width UTC text, so string order equals time order."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compile_grants(consent: Consent) -> list[Grant]:
    """The grant rows of ``consent`` (none unless it is active), sorted and without duplicates."""
    if not consent.is_active:
        return []
    if not consent.id:
        raise ConsentError("Consent.id", "a stored Consent needs an id to compile grants")
    rows: set[Grant] = set()
    _compile(consent, consent.provision, Scope(), rows)
    return sorted(rows, key=_sort_key)


def _sort_key(g: Grant) -> tuple[Any, ...]:
    return (g.provision_path, g.effect, g.viewer_org, g.viewer_practitioner, g.data_class,
            g.security_label, g.purpose)


def _compile(consent: Consent, node: Provision, inherited: Scope, rows: set[Grant]) -> None:
    scope = inherited.narrow(node)
    if isinstance(scope, str):
        return  # the parser refuses such consents; a hand-built value simply grants nothing
    atoms = sorted(scope.atoms) if scope.atoms is not None else [(ANY, ANY)]
    classes = sorted(scope.classes) if scope.classes is not None else [ANY]
    if scope.labels is not None:
        labels = sorted(scope.labels)
    else:
        labels = [ORDINARY] if node.type == "permit" else [ANY]
    purposes = sorted(scope.purposes) if scope.purposes is not None else [ANY]
    for org, practitioner in atoms:
        for data_class in classes:
            for label in labels:
                for purpose in purposes:
                    rows.add(Grant(
                        consent_id=consent.id or "",
                        patient=consent.patient,
                        effect=node.type,
                        viewer_org=org,
                        viewer_practitioner=practitioner,
                        data_class=data_class,
                        security_label=label,
                        purpose=purpose,
                        data_from=scope.data_period.start,
                        data_to=scope.data_period.end,
                        valid_from=scope.period.start,
                        valid_to=scope.period.end,
                        provision_path=node.path,
                    ))
    for child in node.provisions:
        _compile(consent, child, scope, rows)


def grant_matches(g: Grant, request: AccessRequest) -> bool:
    """``match(g, r)`` of the module docstring, label excluded."""
    facts = request.resource
    date = facts.clinical_date
    if date is None:
        dated_ok = g.effect == "deny" or (g.data_from is None and g.data_to is None)
    else:
        dated_ok = (g.data_from is None or g.data_from <= date) and (g.data_to is None or date <= g.data_to)
    return (
        g.patient == facts.patient
        and g.viewer_org in (ANY, request.viewer_org)
        and (g.viewer_practitioner == ANY or g.viewer_practitioner == request.viewer_practitioner)
        and g.data_class in (ANY, facts.data_class)
        and (g.purpose == ANY or g.purpose in purpose_closure(request.purpose))
        and (g.valid_from is None or g.valid_from <= request.now)
        and (g.valid_to is None or request.now <= g.valid_to)
        and dated_ok
    )


def grants_permit(grants: Iterable[Grant], request: AccessRequest) -> bool:
    """``visible(r)`` of the module docstring: the reference the SQL predicate must equal."""
    facts = request.resource
    org = request.viewer_org
    if org is not None and org == facts.custodian and request.viewer_may_disclose:
        return True
    if org is None or not request.viewer_may_view or facts.data_class in NEVER_GRANTED:
        return False
    matching = [g for g in grants if grant_matches(g, request)]
    labels = facts.sensitive_labels
    if any(g.effect == "deny" and (g.security_label == ANY or g.security_label in labels) for g in matching):
        return False
    permits = {g.security_label for g in matching if g.effect == "permit"}
    if labels:
        return labels <= permits
    return ORDINARY in permits
