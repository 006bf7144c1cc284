"""The node's Consent profile as typed values: parse a FHIR R4 ``Consent`` (a JSON dict).

Implements the reading side of the node's Consent profile on base R4 Consent
(https://hl7.org/fhir/R4/consent.html; profile published as
``consent/definitions/StructureDefinition-hie-consent.json``, described in
``docs/consent-profile.md``).

What the profile accepts (anything else raises :class:`ConsentError` naming the element path,
e.g. ``Consent.provision.provision[1].actor[0].reference``):

- ``scope`` patient-privacy, ``policyRule`` v3-ActCode OPTIN (opt-in only), a ``patient``;
- a root ``provision`` with a ``type``. Nested provisions are exceptions that narrow their
  parent: every nested provision applies only where all its ancestors apply too. A ``deny``
  provision is final: it may not contain nested provisions (a permit nested in a deny would need
  "most specific wins" semantics, which the flat grants table cannot express next to the
  deny-overrides rule between consents);
- ``provision.actor``: viewing ``Organization`` or ``Practitioner`` references (literal
  references; identifier-only references are refused) with role v3-RoleClass PROV or
  v3-ParticipationType IRCP/PRCP;
- ``provision.class`` / ``provision.code``: data classes from :data:`DATA_CLASS_SYSTEM`;
- ``provision.securityLabel``: v3-ActCode sensitivity codes (:data:`SENSITIVE_LABELS`);
- ``provision.purpose``: v3-ActReason codes; ``provision.action``: access / use / disclose;
- ``provision.period`` (when the rule is in force), ``provision.dataPeriod`` (which clinical
  dates it covers). ``provision.data`` (per-resource rules) is not supported.

Partial dates are widened to the whole year / month / day they name; dates without a time are
read in the node's time zone :data:`NODE_TZ` (Japan). Pure code: no I/O, nothing from ``hie``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from consent.classes import ALL_CLASSES
from consent.errors import ConsentError
from consent.periods import NODE_TZ, Period, parse_datetime, parse_period
from consent.scope import Scope
from consent.vocab import (
    ACT_CODE_SYSTEM,
    ACT_REASON_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    CONSENT_SCOPE_SYSTEM,
    DATA_CLASS_SYSTEM,
    OPT_IN,
    PATIENT_PRIVACY,
    SENSITIVE_LABELS,
    VIEWER_ROLES,
    VIEWING_ACTIONS,
)

__all__ = [
    "ANY", "NODE_TZ", "STATUSES", "Actor", "Consent", "ConsentError", "Period", "Provision",
    "SourceAttachment", "parse_consent", "parse_datetime", "parse_period",
]

STATUSES: Final = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
ANY: Final = "*"

Effect = Literal["permit", "deny"]


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class Actor:
    """A viewer a provision names: an Organization (any of its staff) or one Practitioner."""

    kind: Literal["Organization", "Practitioner"]
    id: str
    role: str
    path: str

    @property
    def org(self) -> str:
        return self.id if self.kind == "Organization" else ANY

    @property
    def practitioner(self) -> str:
        return self.id if self.kind == "Practitioner" else ANY

    def matches(self, viewer_org: str | None, viewer_practitioner: str | None) -> bool:
        """Does a viewer (a user of ``viewer_org``, optionally identified) fall under this actor?

        Only facility users match: a request without an organization matches no actor.
        """
        if viewer_org is None:
            return False
        if self.kind == "Organization":
            return viewer_org == self.id
        return viewer_practitioner == self.id

    def describe(self) -> str:
        return f"{self.kind}/{self.id}"


@dataclass(frozen=True)
class Provision:
    """One rule of a Consent; ``path`` is its FHIRPath-like location for explanations."""

    path: str
    type: Effect
    period: Period | None = None
    actors: tuple[Actor, ...] = ()
    actions: frozenset[str] = frozenset()
    purposes: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    security_labels: frozenset[str] = frozenset()
    data_period: Period | None = None
    provisions: tuple[Provision, ...] = ()

    def walk(self, ancestors: tuple[Provision, ...] = ()) -> Iterator[tuple[Provision, ...]]:
        """Every rule in the tree as its chain root..rule, parents before children."""
        chain = (*ancestors, self)
        yield chain
        for child in self.provisions:
            yield from child.walk(chain)

    def describe(self) -> str:
        """One human-readable line: what this rule (on its own) covers."""
        who = ", ".join(a.describe() for a in self.actors) or "every participating facility"
        what = ", ".join(sorted(self.classes)) or "all data classes"
        parts = [f"{self.type} {who}", f"data: {what}"]
        if self.security_labels:
            parts.append("sensitive labels: " + ", ".join(sorted(self.security_labels)))
        if self.purposes:
            parts.append("purpose: " + ", ".join(sorted(self.purposes)))
        if self.data_period:
            parts.append(f"data dated {self.data_period.describe()}")
        if self.period:
            parts.append(f"in force {self.period.describe()}")
        return "; ".join(parts)


@dataclass(frozen=True)
class SourceAttachment:
    """The scanned paper consent form (``Consent.sourceAttachment``)."""

    content_type: str | None
    url: str | None
    title: str | None
    creation: datetime | None
    size: int | None
    hash: str | None
    has_inline_data: bool


@dataclass(frozen=True)
class Consent:
    """A Consent in the node's profile.

    ``patient`` is the key that grants and requests compare; it defaults to the literal
    ``patient_reference`` and the storage layer passes the regional patient key instead.
    """

    id: str | None
    patient_reference: str
    patient: str
    status: str
    provision: Provision
    scope: str = PATIENT_PRIVACY
    categories: tuple[str, ...] = ()
    date_time: datetime | None = None
    performers: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    source: SourceAttachment | None = None
    policy_uris: tuple[str, ...] = ()
    policy_rule: str = OPT_IN
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_active(self) -> bool:
        """Only ``active`` consents have any effect; draft, proposed, rejected, inactive
        (revoked) and entered-in-error consents do nothing."""
        return self.status == "active"

    @property
    def label(self) -> str:
        return f"Consent/{self.id}" if self.id else "Consent (no id)"


# --------------------------------------------------------------------------- parsing

_REFERENCE = re.compile(r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConsentError(path, f"expected an object, got {type(value).__name__}")
    if value.get("modifierExtension"):
        raise ConsentError(f"{path}.modifierExtension", "modifier extensions are not understood by the node")
    return value


def _items(parent: dict[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConsentError(f"{path}.{key}", "expected an array")
    return [(f"{path}.{key}[{i}]", item) for i, item in enumerate(value)]


def _string(parent: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise ConsentError(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConsentError(f"{path}.{key}", "expected a non-empty string")
    return value


def _coding(value: Any, path: str) -> tuple[str, str]:
    obj = _obj(value, path)
    system = _string(obj, "system", path, required=True)
    code = _string(obj, "code", path, required=True)
    assert system is not None and code is not None
    return system, code


def _codings(concept: Any, path: str) -> list[tuple[str, str, str]]:
    """(system, code, path) of each coding of a CodeableConcept."""
    obj = _obj(concept, path)
    return [(*_coding(c, p), p) for p, c in _items(obj, "coding", path)]


def _reference(value: Any, path: str, allowed: frozenset[str]) -> tuple[str, str]:
    """(type, id) of a literal reference to one of ``allowed`` resource types."""
    obj = _obj(value, path)
    ref = obj.get("reference")
    if ref is None:
        if "identifier" in obj:
            raise ConsentError(path, "identifier-only references are not supported; use a literal reference")
        raise ConsentError(path, "a literal reference is required")
    if not isinstance(ref, str):
        raise ConsentError(path, "expected a string reference")
    m = _REFERENCE.match(ref)
    if not m or m["type"] not in allowed:
        kinds = " or ".join(sorted(allowed))
        raise ConsentError(path, f"must reference {kinds}, got {ref!r}")
    return m["type"], m["id"]


_PERFORMER_TYPES: Final = frozenset({"Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"})


def parse_consent(resource: dict[str, Any], *, patient_key: str | None = None) -> Consent:
    """Parse ``resource`` (FHIR R4 Consent JSON) in the node's profile.

    ``patient_key``: the regional patient key the identity service resolved
    ``Consent.patient`` to; grants and decisions use it. Defaults to the literal reference.
    Raises :class:`ConsentError` for shapes the profile does not accept.
    """
    root = "Consent"
    obj = _obj(resource, root)
    if obj.get("resourceType") != "Consent":
        raise ConsentError(f"{root}.resourceType", f"expected 'Consent', got {obj.get('resourceType')!r}")
    consent_id = _string(obj, "id", root)

    status = _string(obj, "status", root, required=True)
    if status not in STATUSES:
        raise ConsentError(f"{root}.status", f"unknown status {status!r}")

    if "scope" not in obj:
        raise ConsentError(f"{root}.scope", "is required")
    scopes = {(s, c) for s, c, _ in _codings(obj["scope"], f"{root}.scope")}
    if (CONSENT_SCOPE_SYSTEM, PATIENT_PRIVACY) not in scopes:
        raise ConsentError(f"{root}.scope", f"only {CONSENT_SCOPE_SYSTEM}|{PATIENT_PRIVACY} is supported")

    categories: list[str] = []
    for p, cat in _items(obj, "category", root):
        categories.extend(f"{s}|{c}" for s, c, _ in _codings(cat, p))
    if not categories:
        raise ConsentError(f"{root}.category", "at least one coded category is required")

    if "patient" not in obj:
        raise ConsentError(f"{root}.patient", "is required")
    _reference(obj["patient"], f"{root}.patient", frozenset({"Patient"}))
    patient_reference = obj["patient"]["reference"]

    date_time = parse_datetime(obj["dateTime"], f"{root}.dateTime") if "dateTime" in obj else None
    performers = tuple(
        "/".join(_reference(v, p, _PERFORMER_TYPES)) for p, v in _items(obj, "performer", root)
    )
    organizations = tuple(
        "/".join(_reference(v, p, frozenset({"Organization"}))) for p, v in _items(obj, "organization", root)
    )

    if "sourceReference" in obj:
        raise ConsentError(f"{root}.sourceReference",
                           "not supported by the profile; attach the scanned form as sourceAttachment")
    source = _source(obj["sourceAttachment"], f"{root}.sourceAttachment") if "sourceAttachment" in obj else None

    policy_uris = []
    for p, pol in _items(obj, "policy", root):
        pol = _obj(pol, p)
        uri = _string(pol, "uri", p) or _string(pol, "authority", p)
        if uri is None:
            raise ConsentError(p, "a policy needs a uri or an authority")
        policy_uris.append(uri)

    if "policyRule" not in obj:
        raise ConsentError(f"{root}.policyRule", f"is required and must be {ACT_CODE_SYSTEM}|{OPT_IN}")
    rules = {(s, c) for s, c, _ in _codings(obj["policyRule"], f"{root}.policyRule")}
    if (ACT_CODE_SYSTEM, OPT_IN) not in rules:
        raise ConsentError(f"{root}.policyRule", f"only opt-in ({ACT_CODE_SYSTEM}|{OPT_IN}) is supported")

    if "provision" not in obj:
        raise ConsentError(f"{root}.provision", "is required")
    provision = _provision(obj["provision"], f"{root}.provision")
    _check_satisfiable(provision, Scope())

    return Consent(
        id=consent_id,
        patient_reference=patient_reference,
        patient=patient_key or patient_reference,
        status=status,
        provision=provision,
        categories=tuple(categories),
        date_time=date_time,
        performers=performers,
        organizations=organizations,
        source=source,
        policy_uris=tuple(policy_uris),
        raw=resource,
    )


def _source(value: Any, path: str) -> SourceAttachment:
    obj = _obj(value, path)
    size = obj.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ConsentError(f"{path}.size", "expected a non-negative integer")
    url = _string(obj, "url", path)
    data = _string(obj, "data", path)
    if url is None and data is None:
        raise ConsentError(path, "the scanned form needs a url or inline data")
    return SourceAttachment(
        content_type=_string(obj, "contentType", path),
        url=url,
        title=_string(obj, "title", path),
        creation=parse_datetime(obj["creation"], f"{path}.creation") if "creation" in obj else None,
        size=size,
        hash=_string(obj, "hash", path),
        has_inline_data=data is not None,
    )


def _provision(value: Any, path: str) -> Provision:
    obj = _obj(value, path)
    ptype = _string(obj, "type", path, required=True)
    if ptype not in ("permit", "deny"):
        raise ConsentError(f"{path}.type", f"expected 'permit' or 'deny', got {ptype!r}")
    if obj.get("data"):
        raise ConsentError(f"{path}.data",
                           "per-resource provisions are not supported; restrict by class, dataPeriod or securityLabel")

    actors = []
    for p, item in _items(obj, "actor", path):
        item = _obj(item, p)
        if "role" not in item:
            raise ConsentError(f"{p}.role", "is required")
        roles = {(s, c) for s, c, _ in _codings(item["role"], f"{p}.role")}
        if not roles & VIEWER_ROLES:
            allowed = ", ".join(f"{s}|{c}" for s, c in sorted(VIEWER_ROLES))
            raise ConsentError(f"{p}.role", f"must be a viewer role ({allowed})")
        if "reference" not in item:
            raise ConsentError(f"{p}.reference", "is required")
        kind, ident = _reference(item["reference"], f"{p}.reference", frozenset({"Organization", "Practitioner"}))
        role = "|".join(sorted(roles & VIEWER_ROLES)[0])
        actors.append(Actor(kind=kind, id=ident, role=role, path=p))  # type: ignore[arg-type]

    actions = set()
    for p, concept in _items(obj, "action", path):
        for system, code, cp in _codings(concept, p):
            if system != CONSENT_ACTION_SYSTEM or code not in VIEWING_ACTIONS:
                raise ConsentError(
                    cp, f"only {CONSENT_ACTION_SYSTEM} access/use/disclose are enforced, got {system}|{code}")
            actions.add(code)

    labels = set()
    for p, coding in _items(obj, "securityLabel", path):
        system, code = _coding(coding, p)
        if system != ACT_CODE_SYSTEM or code not in SENSITIVE_LABELS:
            raise ConsentError(p, f"expected a sensitivity code of {ACT_CODE_SYSTEM} "
                                  f"({', '.join(sorted(SENSITIVE_LABELS))}), got {system}|{code}")
        labels.add(code)

    purposes = set()
    for p, coding in _items(obj, "purpose", path):
        system, code = _coding(coding, p)
        if system != ACT_REASON_SYSTEM:
            raise ConsentError(f"{p}.system", f"expected {ACT_REASON_SYSTEM}, got {system}")
        purposes.add(code)

    classes = set()
    for p, coding in _items(obj, "class", path):
        classes.add(_data_class(*_coding(coding, p), p))
    for p, concept in _items(obj, "code", path):
        codings = _codings(concept, p)
        if not codings:
            raise ConsentError(p, "expected at least one coding")
        for system, code, cp in codings:
            classes.add(_data_class(system, code, cp))

    period = parse_period(obj["period"], f"{path}.period") if "period" in obj else None
    data_period = parse_period(obj["dataPeriod"], f"{path}.dataPeriod") if "dataPeriod" in obj else None

    children = tuple(_provision(child, p) for p, child in _items(obj, "provision", path))
    if ptype == "deny" and children:
        raise ConsentError(f"{path}.provision",
                           "a deny provision cannot contain nested provisions (deny is final)")

    return Provision(
        path=path,
        type=ptype,  # type: ignore[arg-type]
        period=period,
        actors=tuple(actors),
        actions=frozenset(actions),
        purposes=frozenset(purposes),
        classes=frozenset(classes),
        security_labels=frozenset(labels),
        data_period=data_period,
        provisions=children,
    )


def _check_satisfiable(node: Provision, inherited: Scope) -> None:
    """Refuse nested provisions whose conditions do not overlap their ancestors': they could
    never apply, which is almost certainly a mistake in the consent form."""
    narrowed = inherited.narrow(node)
    if isinstance(narrowed, str):
        raise ConsentError(f"{node.path}.{narrowed}",
                           f"does not overlap the enclosing provisions' {narrowed}, "
                           "so this provision could never apply")
    for child in node.provisions:
        _check_satisfiable(child, narrowed)


def _data_class(system: str, code: str, path: str) -> str:
    if system != DATA_CLASS_SYSTEM:
        raise ConsentError(f"{path}.system", f"expected {DATA_CLASS_SYSTEM}, got {system}")
    if code not in ALL_CLASSES:
        raise ConsentError(f"{path}.code", f"unknown data class {code!r}")
    return code
