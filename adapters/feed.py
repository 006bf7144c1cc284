"""Submitting mapped HL7 v2 / SS-MIX2 messages to the node, and the dead-letter store.

Everything goes through the node's public ingest API (``hie.ingest``): transactions
run as the system principal; a message that cannot be mapped or ingested is stored
with its raw bytes and the error (``record_failure``) and can be replayed after a fix
(ARCHITECTURE.md, "Ingest": nothing is dropped silently).

Two things the mapping alone cannot decide, because they depend on what the node
already holds, are settled here:

* the sending facility's Organization: referenced as ``Organization/<id>``; if the
  node knows the facility under its institution code (``MedicalOrganizationID``)
  with another id, references are pointed there, otherwise a minimal Organization
  ``Organization/<facility_org_id(code)>`` is created once;
* the patient for messages that do not own demographics (labs, orders, ...): the
  node enforces referential integrity, so if the facility patient does not exist
  yet it is created from the message's PID; an existing patient is never
  overwritten by such a message (only ADT messages update demographics).

Failure ``source`` strings are ``<channel>:<facility>:<where>`` so a replay knows how
to map the payload again: ``ssmix2:1312345670:/abs/path/file``, ``mllp:1312345670:<MSH-10>``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.hl7v2.errors import V2Error
from adapters.hl7v2.ids import MEDICAL_ORGANIZATION_ID, FeedIds, facility_org_id, node_feed_ids
from adapters.hl7v2.mapping import MappingResult, map_message

JP_ORG = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization"


class IngestRejected(Exception):
    """The node refused the transaction (validation, reference, conflict)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class Feed:
    """Submits mapped messages for one node; caches facility and patient existence."""

    node: Any
    facility_names: dict[str, str] = field(default_factory=dict)
    _orgs: dict[str, str] = field(default_factory=dict)
    _known: set[str] = field(default_factory=set)  # "Type/id" known to exist
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: The node's keyed logical ids; default: from its data directory or ``HIE_FEED_ID_KEY``.
    feed_ids: FeedIds | None = None

    def __post_init__(self) -> None:
        if self.feed_ids is None:
            self.feed_ids = node_feed_ids(self.node.settings.data_dir)

    @property
    def ids(self) -> FeedIds:
        assert self.feed_ids is not None
        return self.feed_ids

    # ------------------------------------------------------------ node access
    def _run(self, bundle: dict[str, Any], source: str) -> dict[str, Any]:
        from hie.errors import FhirError
        from hie.ingest import error_text, ingest_bundle

        try:
            return ingest_bundle(self.node, bundle, source=source)
        except FhirError as err:
            raise IngestRejected(error_text(err)) from None

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Search as the system principal with a batch GET through the public ingest
        function (same interaction as ``GET [base]/Type?...``)."""
        from urllib.parse import urlencode

        url = f"{rtype}?{urlencode(params)}"
        resp = self._run({"resourceType": "Bundle", "type": "batch",
                          "entry": [{"request": {"method": "GET", "url": url}}]}, source="adapters:lookup")
        entry = (resp.get("entry") or [{}])[0]
        status = str(entry.get("response", {}).get("status", ""))
        if not status.startswith("200"):
            raise IngestRejected(f"lookup {url} answered {status}: {entry.get('response', {}).get('outcome')}")
        body = entry.get("resource") or {}
        return [e["resource"] for e in body.get("entry") or ()
                if e.get("resource", {}).get("resourceType") == rtype]

    def facility_org(self, code: str) -> str:
        """The Organization id of a facility, creating it if the node has none."""
        if code in self._orgs:
            return self._orgs[code]
        matches = [r["id"] for r in self._search("Organization", [("identifier", f"{MEDICAL_ORGANIZATION_ID}|{code}")])]
        if len(matches) > 1:
            raise IngestRejected(f"{len(matches)} Organizations carry institution code {code}")
        org_id = matches[0] if matches else None
        if org_id is None:
            org_id = facility_org_id(code)
            org = {"resourceType": "Organization", "id": org_id, "meta": {"profile": [JP_ORG]},
                   "identifier": [{"system": MEDICAL_ORGANIZATION_ID, "value": code}], "active": True,
                   "name": self.facility_names.get(code) or f"medical institution {code}"}
            self._run({"resourceType": "Bundle", "type": "transaction",
                       "entry": [{"resource": org, "request": {"method": "PUT", "url": f"Organization/{org_id}"}}]},
                      source=f"adapters:facility:{code}")
        self._orgs[code] = org_id
        return org_id

    # ------------------------------------------------------------ submit
    def submit(self, result: MappingResult, *, facility: str, source: str) -> dict[str, Any]:
        """Ingest one mapped message; returns the transaction-response Bundle."""
        with self._lock:
            bundle = result.bundle
            org_id = self.facility_org(facility)
            default_org = facility_org_id(facility)
            extra = result.if_absent
            if org_id != default_org:
                old, new = f"Organization/{default_org}", f"Organization/{org_id}"
                # _retarget builds new containers (leaves are immutable): no deep copy first
                bundle = _retarget(bundle, old, new)
                extra = {k: _retarget(v, old, new) for k, v in extra.items()}
            missing = []
            unknown = [key for key in extra if key not in self._known]
            if unknown:
                from hie.ingest import existing

                self._known.update(existing(self.node, unknown))  # one read for all of them
            for key, res in extra.items():
                if key not in self._known:
                    missing.append({"resource": res, "request": {"method": "PUT", "url": key}})
            if missing:
                bundle = dict(bundle)
                bundle["entry"] = missing + list(bundle["entry"])
            try:
                resp = self._run(bundle, source=source)
            except IngestRejected as err:
                raise _with_origin(err, bundle, result.origins) from None
            self._known.update(e["request"]["url"] for e in missing)
            for e in bundle["entry"]:
                if e["request"]["method"] == "DELETE":
                    self._known.discard(e["request"]["url"])
            return resp

    def forget(self, key: str) -> None:
        self._known.discard(key)


def _with_origin(err: IngestRejected, bundle: dict[str, Any], origins: dict[str, str]) -> IngestRejected:
    """Name the HL7 location a rejected resource was mapped from (the node's message names
    ``Bundle.entry[i]``; the adapter does not validate before the node does)."""
    m = re.search(r"Bundle\.entry\[(\d+)\]", err.text)
    if m is None:
        return err
    entries = bundle.get("entry") or []
    i = int(m.group(1))
    url = entries[i]["request"]["url"] if i < len(entries) else None
    origin = origins.get(url) if url else None
    return IngestRejected(f"{err.text} (mapped from {origin})") if origin else err


def _retarget(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: (new if k == "reference" and v == old else _retarget(v, old, new)) for k, v in node.items()}
    if isinstance(node, list):
        return [_retarget(v, old, new) for v in node]
    return node


# ---------------------------------------------------------------- dead letters

def failure_source(channel: str, facility: str, where: str) -> str:
    return f"{channel}:{facility}:{where}"


def parse_failure_source(source: str) -> tuple[str, str, str]:
    channel, facility, where = source.split(":", 2)
    return channel, facility, where


def record(node: Any, *, channel: str, facility: str, where: str, payload: bytes, error: str) -> int:
    from hie.ingest import record_failure

    return record_failure(node, channel=channel, source=failure_source(channel, facility, where),
                          payload=payload, error=error)


def describe(err: Exception) -> str:
    if isinstance(err, V2Error):
        return f"{err.location}: {err.reason}" if err.location else err.reason
    if isinstance(err, IngestRejected):
        return f"node rejected the transaction: {err.text}"
    return f"{type(err).__name__}: {err}"


def replay_one(node: Any, feed: Feed, failure: Any, *, default_charset: str = "ascii") -> tuple[bool, str]:
    """Map and ingest a stored failure again. Returns (ok, error text). ``default_charset``:
    for MLLP messages without MSH-18, the codec the listener was configured with."""
    from hie.ingest import mark_replayed

    try:
        channel, facility, where = parse_failure_source(failure.source)
        if channel == "ssmix2":
            from adapters.ssmix2.importer import map_storage_bytes

            result = map_storage_bytes(bytes(failure.payload), Path(where), facility, ids=feed.ids)
            meta_source = where
        elif channel == "mllp":
            result = map_message(bytes(failure.payload), facility=facility, source=f"mllp:{where}", ids=feed.ids,
                                 default_charset=default_charset)
            meta_source = f"mllp:{where}"
        else:
            raise ValueError(f"unknown channel {channel!r}")
        feed.submit(result, facility=facility, source=meta_source)
    except Exception as err:  # noqa: BLE001 - every failure is recorded, none is raised
        text = describe(err)
        mark_replayed(node, failure.pk, ok=False, error=text)
        return False, text
    mark_replayed(node, failure.pk, ok=True)
    return True, ""
