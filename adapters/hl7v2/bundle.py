"""Build the FHIR transaction Bundle for one HL7 v2 message, and validate it.

FHIR R4 transaction semantics (http://hl7.org/fhir/R4/http.html#transaction): every
resource is an entry with ``request.method = PUT`` and ``url = Type/<stable id>``
(update-as-create, so a resend updates instead of duplicating); withdrawn SS-MIX2
files (condition flag 0) become ``DELETE`` entries for the same ids.

Every resource carries:

* ``meta.source``: the file or ``mllp:<control id>`` it came from,
* ``meta.tag`` ``http://hie.example.jp/fhir/CodeSystem/custodian|<10-digit code>``
  (the node reads the custodian from it),
* the custodian as ``Organization/<facility_org_id(code)>`` in the extension
  :data:`CUSTODIAN_EXTENSION` (and in the element the resource type has for it,
  e.g. ``Patient.managingOrganization``, set by the mappers),
* the facility patient identifier, in ``Patient.identifier`` or in the subject
  reference's ``identifier``.

Validation: the node validates every resource it is given (``fhir.resources.R4B``), so
the builder does not validate them a second time (that doubled the cost of a message).
It records where each resource was mapped from (:attr:`BundleBuilder.origins`); when the
node rejects a resource, the feed reports the node's OperationOutcome location together
with that HL7 origin (:mod:`adapters.feed`). :func:`validate_bundle` remains for tests.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .codesystems import CUSTODIAN_TAG_SYSTEM
from .errors import InvalidResource, MappingError
from .ids import FeedIds, facility_org_id, patient_system

CUSTODIAN_EXTENSION = "http://hie.example.jp/fhir/StructureDefinition/custodian"
_UUID_NS = uuid.UUID("6f1c1f3e-5a55-4b8e-9c51-2d7a4c0b8e11")


def source_uri(source: str) -> str:
    """meta.source is a FHIR ``uri`` (no whitespace): percent-encode what is needed."""
    return quote(source, safe="/:._-~@+=,;!*'()$&?#[]%")


class BundleBuilder:
    """Collects the resources of one message, decorated and validated."""

    def __init__(self, facility: str, source: str, patient_number: str, ids: FeedIds) -> None:
        self.facility = facility
        self.source = source_uri(source)
        self.patient_number = patient_number
        self.ids = ids
        self.patient_id = ids.patient_id(facility, patient_number)
        self.org_ref = {"reference": f"Organization/{facility_org_id(facility)}"}
        self._entries: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}
        #: Resources to create only when the node does not have them yet (see
        #: :meth:`put_if_absent`), keyed by "Type/id".
        self.if_absent: dict[str, dict[str, Any]] = {}
        #: "Type/id" -> the HL7 location the resource was mapped from (error reports).
        self.origins: dict[str, str] = {}

    # ------------------------------------------------------------ references
    def patient_ref(self) -> dict[str, Any]:
        return {"reference": f"Patient/{self.patient_id}",
                "identifier": {"system": patient_system(self.facility), "value": self.patient_number}}

    def new_id(self, resource_type: str, *key: str) -> str:
        return self.ids.stable_id(resource_type, self.facility, self.patient_number, *key)

    # ------------------------------------------------------------ entries
    def put(self, resource: dict[str, Any], origin: str, *, replace: bool = False) -> dict[str, str]:
        """Add ``resource`` (must have resourceType and id) as a PUT entry.

        ``origin`` is the HL7 location it was mapped from (for error reports). A
        second resource with the same id is an error unless ``replace`` is set
        (the later segment then wins, e.g. ORC NW followed by ORC PA of one order).
        Returns a reference to it.
        """
        rtype, rid = resource["resourceType"], resource["id"]
        key = f"{rtype}/{rid}"
        self._decorate(resource)
        entry = {"fullUrl": f"urn:uuid:{uuid.uuid5(_UUID_NS, key)}", "resource": resource,
                 "request": {"method": "PUT", "url": key}}
        if key in self._index:
            if not replace:
                raise MappingError(origin, f"two segments map to the same {rtype} (business key repeated)")
            self._entries[self._index[key]] = entry
        else:
            self._index[key] = len(self._entries)
            self._entries.append(entry)
        self.origins[key] = origin
        return {"reference": key}

    def put_if_absent(self, resource: dict[str, Any], origin: str) -> dict[str, str]:
        """A resource this message may create but must not overwrite: the patient in a
        message that does not own demographics, the order in a result message. The
        node enforces referential integrity, so the feed creates it when missing."""
        key = f"{resource['resourceType']}/{resource['id']}"
        if key in self._index:
            return {"reference": key}
        self._decorate(resource)
        self.if_absent[key] = resource
        self.origins[key] = origin
        return {"reference": key}

    def has(self, key: str) -> bool:
        return key in self._index or key in self.if_absent

    def _decorate(self, resource: dict[str, Any]) -> None:
        meta = resource.setdefault("meta", {})
        meta["source"] = self.source
        tags = [t for t in meta.get("tag", []) if t.get("system") != CUSTODIAN_TAG_SYSTEM]
        tags.append({"system": CUSTODIAN_TAG_SYSTEM, "code": self.facility})
        meta["tag"] = tags
        ext = [e for e in resource.get("extension", []) if e.get("url") != CUSTODIAN_EXTENSION]
        ext.append({"url": CUSTODIAN_EXTENSION, "valueReference": dict(self.org_ref)})
        resource["extension"] = ext

    # ------------------------------------------------------------ output
    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self._entries]

    def transaction(self, *, delete: bool = False, keep_on_delete: tuple[str, ...] = ("Patient",)) -> dict[str, Any]:
        """The transaction Bundle. ``delete`` turns it into DELETE entries for the same
        ids (SS-MIX2 flag 0), leaving out ``keep_on_delete`` types: a withdrawn file
        withdraws its clinical content, not the person."""
        if delete:
            entries = [{"request": {"method": "DELETE", "url": e["request"]["url"]}}
                       for e in self._entries
                       if e["resource"]["resourceType"] not in keep_on_delete]
        else:
            entries = list(self._entries)
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


_MODEL_CACHE: dict[str, Any] = {}


def _validate(resource: dict[str, Any], origin: str) -> None:
    rtype = resource.get("resourceType", "")
    model = _MODEL_CACHE.get(rtype)
    if model is None:
        model = _MODEL_CACHE[rtype] = get_fhir_model_class(rtype)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidResource(origin, f"{rtype} fails R4B validation at {where}: {first.get('msg')}") from None


def validate_bundle(bundle: dict[str, Any]) -> None:
    """Validate a whole transaction Bundle with the R4B models (tests, replay)."""
    _validate(bundle, "Bundle")
