"""What enforcement needs to know about a resource, derived once at write time.

* ``patient_ids``: the local Patient ids the resource is about, found as the official R4
  Patient CompartmentDefinition says (:mod:`consent.compartment`: the subject-like elements
  first, the role elements such as ``performer`` only if those name no patient), plus the
  explicit rules of :data:`EXPLICIT` for the types it is silent about (``Binary``,
  ``Device``, ``Task``, ...) and the contents of document Bundles, other Bundles and
  Parameters. Exactly one patient (after the identity service maps the ids to regional
  keys) gives the row its ``patient_key``; several, or none for data that is not
  administrative, leave it without one: visible to its custodian only.
* ``patient_via``: references whose target's patient the resource takes
  (``Binary.securityContext``, ``Task.focus``, ...); the repository resolves them at write
  time, through its own access predicate, and the row takes the target's data class,
  sensitive labels and date as well (docs/adr/0006-version-visibility.md).
* ``custodian``: the disclosing facility, from the ``meta.tag`` with system
  :data:`hie.fhir.naming.CUSTODIAN_TAG_SYSTEM`, else the writing principal's facility.
* ``data_class``: :func:`consent.classes.classify`.
* ``security_labels``: the ``meta.security`` codes, space-delimited with sentinels;
  ``sensitive_labels`` the subset consent enforces (v3 ActCode sensitivity codes). A Bundle
  or Parameters carries the labels of everything inside it.
* ``clinical_date`` (epoch microseconds), ``status`` and ``hidden_from_patient`` (JP-CLINS
  ``UNINFORMED`` tag, of the resource or of anything inside it): for data periods, the
  emergency dataset and the patient portal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from consent.classes import ADMINISTRATIVE, CLINICAL, classify
from consent.compartment import about_paths
from consent.request import UNINFORMED, clinical_date_of, status_of
from consent.vocab import SENSITIVE_LABELS
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM

#: Where the Patient CompartmentDefinition is silent: type -> (paths of references to a
#: Patient, paths of references whose target's patient the resource takes).
EXPLICIT: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "Binary": ((), ("securityContext",)),
    "BiologicallyDerivedProduct": (("collection.source",), ("request",)),
    "Contract": (("subject",), ("subject",)),
    "Device": (("patient",), ()),
    "EnrollmentResponse": ((), ("request",)),
    "GuidanceResponse": (("subject",), ()),
    "Linkage": (("item.resource",), ("item.resource",)),
    "MessageHeader": (("focus",), ("focus",)),
    "PaymentNotice": ((), ("request",)),
    "PaymentReconciliation": ((), ("detail.request",)),
    "Task": (("for",), ("focus",)),
    "VerificationResult": (("target",), ("target",)),
}

#: Types whose patient is what they contain (document Bundle: its Composition's subject).
CONTAINERS: Final = frozenset({"Bundle", "Parameters"})


@dataclass(frozen=True)
class RowMeta:
    patient_ids: tuple[str, ...]  # local Patient ids the resource is about
    patient_via: tuple[str, ...]  # "Type/id" whose patient the resource takes
    custodian: str | None
    data_class: str
    security_labels: str
    sensitive_labels: str
    clinical_date: int | None
    status: str | None
    hidden_from_patient: bool

    @property
    def patient_ref(self) -> str | None:
        """The one local Patient id the resource is about, if there is exactly one."""
        return self.patient_ids[0] if len(self.patient_ids) == 1 and not self.patient_via else None

    def columns(self) -> dict[str, Any]:
        """The enforcement columns, except patient_key (resolved by the repository)."""
        return {
            "custodian": self.custodian, "data_class": self.data_class,
            "security_labels": self.security_labels, "sensitive_labels": self.sensitive_labels,
            "clinical_date": self.clinical_date, "status": self.status,
            "hidden_from_patient": self.hidden_from_patient,
        }

    def taking(self, target: dict[str, Any]) -> RowMeta:
        """This row with what it takes from a ``patient_via`` target's enforcement columns:
        its data class (unless administrative), sensitive labels, date and UNINFORMED."""
        return replace(
            self,
            data_class=target["data_class"] if target["data_class"] != ADMINISTRATIVE else self.data_class,
            security_labels=_spaced(_codes(self.security_labels) | _codes(target["security_labels"])),
            sensitive_labels=_spaced(_codes(self.sensitive_labels) | _codes(target["sensitive_labels"])),
            clinical_date=self.clinical_date if self.clinical_date is not None else target["clinical_date"],
            hidden_from_patient=self.hidden_from_patient or bool(target["hidden_from_patient"]),
        )


# -- references -----------------------------------------------------------------------


def _walk(value: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _walk(v, path)
    elif not path:
        yield value
    elif isinstance(value, dict) and path[0] in value:
        yield from _walk(value[path[0]], path[1:])


def _references(resource: dict[str, Any], path: str) -> list[str]:
    out = []
    for ref in _walk(resource, path.split(".")):
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            out.append(ref["reference"].split("/_history/")[0])
    return out


def _typed(ref: str) -> tuple[str, str] | None:
    parts = ref.split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 and parts[-1] and parts[-2][:1].isupper() else None


def _patients_at(resource: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for ref in _references(resource, path):
            typed = _typed(ref)
            if typed and typed[0] == "Patient":
                found.append(typed[1])
    return found


def _others_at(resource: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for ref in _references(resource, path):
            typed = _typed(ref)
            if typed and typed[0] != "Patient":
                found.append(f"{typed[0]}/{typed[1]}")
    return found


# -- which patient ----------------------------------------------------------------------


def _contents(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a Bundle or Parameters carries (Parameters' parts included)."""
    if resource.get("resourceType") == "Bundle":
        items = [e.get("resource") for e in resource.get("entry") or () if isinstance(e, dict)]
    else:
        items = [p.get("resource") for p in _walk_parts(resource.get("parameter") or ())]
    return [r for r in items if isinstance(r, dict)]


def _walk_parts(params: Any) -> Iterator[dict[str, Any]]:
    for p in params if isinstance(params, list) else ():
        if isinstance(p, dict):
            yield p
            yield from _walk_parts(p.get("part"))


def _document_subject(bundle: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The first entry's Composition.subject (a Patient, or an entry holding one)."""
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict)]
    comp = entries[0].get("resource") if entries else None
    if not isinstance(comp, dict) or comp.get("resourceType") != "Composition":
        return None
    ref = (comp.get("subject") or {}).get("reference") if isinstance(comp.get("subject"), dict) else None
    if not isinstance(ref, str):
        return None
    for e in entries:  # a urn:uuid (or any fullUrl) naming an entry of the document
        res = e.get("resource")
        if e.get("fullUrl") == ref and isinstance(res, dict) and res.get("id"):
            ref = f"{res.get('resourceType')}/{res['id']}"
    typed = _typed(ref)
    if typed is None:
        return None
    return ((typed[1],), ()) if typed[0] == "Patient" else ((), (f"{typed[0]}/{typed[1]}",))


def _document_patient(subject: tuple[tuple[str, ...], tuple[str, ...]],
                      contained: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A document is its Composition's subject's only while no entry names another patient:
    an entry about someone else (a mis-composed document) leaves it with every patient its
    entries name -- several, so no single patient, visible to its custodian only, as a
    collection spanning patients. References to resolve (a subject given as an entry that is
    not a Patient, entries taking a target's patient) are kept for the repository."""
    ids, via = subject
    others = tuple(i for i in contained[0] if i not in ids)
    if not others:
        return subject
    return tuple(dict.fromkeys(ids + contained[0])), tuple(dict.fromkeys(via + contained[1]))


def patient_refs(resource: dict[str, Any], _depth: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(patient ids, references to resolve)`` of what ``resource`` is about (see the
    module docstring); each tuple without duplicates, in document order."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return ((resource["id"],) if resource.get("id") else ()), ()
    if rtype in CONTAINERS:
        ids: list[str] = []
        via: list[str] = []
        for inner in _contents(resource) if _depth < 4 else ():
            i, v = patient_refs(inner, _depth + 1)
            ids += i
            via += v
        contained = tuple(dict.fromkeys(ids)), tuple(dict.fromkeys(via))
        if rtype == "Bundle" and resource.get("type") == "document":
            found = _document_subject(resource)
            if found is not None:
                return _document_patient(found, contained)
        return contained
    for paths in about_paths(rtype or ""):
        named = _patients_at(resource, paths)
        if named:
            return tuple(dict.fromkeys(named)), ()
    direct, indirect = EXPLICIT.get(rtype or "", ((), ()))
    named = _patients_at(resource, direct)
    if named:
        return tuple(dict.fromkeys(named)), ()
    return (), tuple(dict.fromkeys(_others_at(resource, indirect)))


def patient_of(resource: dict[str, Any]) -> str | None:
    """The one local Patient id ``resource`` names as whom it is about, or None (no patient,
    several, or only through a reference the repository resolves)."""
    ids, via = patient_refs(resource)
    return ids[0] if len(ids) == 1 and not via else None


# -- custody and labels -----------------------------------------------------------------


def custodian_of(resource: dict[str, Any], default: str | None) -> str | None:
    meta = resource.get("meta") or {}
    for tag in meta.get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == CUSTODIAN_TAG_SYSTEM and tag.get("code"):
            return str(tag["code"])
    return default


def _meta_codes(resource: dict[str, Any], key: str) -> set[str]:
    meta = resource.get("meta") or {}
    return {str(s["code"]) for s in meta.get(key) or () if isinstance(s, dict) and s.get("code")}


def _inside(resource: dict[str, Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    """``resource`` and, for a Bundle or Parameters, everything it carries."""
    yield resource
    if resource.get("resourceType") in CONTAINERS and depth < 4:
        for inner in _contents(resource):
            yield from _inside(inner, depth + 1)


def labels_of(resource: dict[str, Any]) -> str:
    return _spaced(set().union(*(_meta_codes(r, "security") for r in _inside(resource))))


def _spaced(codes: set[str]) -> str:
    return " " + " ".join(sorted(codes)) + " " if codes else " "


def _codes(spaced: str | None) -> set[str]:
    return set((spaced or "").split())


def row_meta(resource: dict[str, Any], default_custodian: str | None) -> RowMeta:
    parts = list(_inside(resource))
    codes = set().union(*(_meta_codes(r, "security") for r in parts))
    when = clinical_date_of(resource)
    status = status_of(resource)
    ids, via = patient_refs(resource)
    data_class = classify(resource)
    if (ids or via) and data_class == ADMINISTRATIVE:  # what names a patient is never administrative
        data_class = CLINICAL
    return RowMeta(
        patient_ids=ids,
        patient_via=via,
        custodian=custodian_of(resource, default_custodian),
        data_class=data_class,
        security_labels=_spaced(codes),
        sensitive_labels=_spaced({c for c in codes if c in SENSITIVE_LABELS}),
        clinical_date=int(when.timestamp() * 1_000_000) if when is not None else None,
        status=status[:32] if status else None,
        hidden_from_patient=any(UNINFORMED in _meta_codes(r, "tag") for r in parts),
    )
