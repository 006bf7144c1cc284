"""FHIR operations of the identity service.

* ``Patient/$match`` -- https://hl7.org/fhir/R4/patient-operation-match.html and IHE PDQm
  ITI-119 (https://profiles.ihe.net/ITI/PDQm/ITI-119.html): POST a ``Parameters`` with
  ``resource`` (a Patient), ``onlyCertainMatches`` and ``count``; the answer is a
  searchset Bundle, one entry per regional person (its regional Patient, or the local
  record while it has none), ``search.mode = match``, ``search.score`` in 0..1 and the
  ``match-grade`` extension. Candidates are read through the caller's repository, so
  the access predicate decides which records can match.
* ``Patient/$ihe-pix`` -- IHE PIXm ITI-83 (https://profiles.ihe.net/ITI/PIXm/ITI-83.html):
  ``sourceIdentifier=system|value`` and optional ``targetSystem``; answers a
  ``Parameters`` with ``targetIdentifier`` and ``targetId`` of the same person's other
  records. Unknown identifier 404, unknown source domain 400, unknown target domain 403.
* Staff actions (write, audited in ``identity_event``): ``$link`` (deterministic link at
  the counter), ``$unlink`` (inverse of a link), ``$merge`` (``source-patient`` into
  ``target-patient``, as the R5 Patient $merge names them), ``$unmerge`` (inverse of a
  merge, by event), ``$identity-review`` (GET lists the queue, POST ``item`` + ``action``
  = ``link`` | ``not-a-match`` decides).

Spec: https://hl7.org/fhir/R4/operations.html
"""

from __future__ import annotations

from typing import Any

from hie.errors import Forbidden, InvalidRequest, NotFound
from hie.identity import authz, store
from hie.identity.features import FACILITY_PATIENT_ID_PREFIX, INSURANCE_MEMBER_ID_SYSTEM, extract_features
from hie.identity.model import ActionResult
from hie.identity.records import regional_view
from hie.identity.score import CERTAIN, match_grade_extension, search_score
from hie.identity.service import service_of
from hie.interactions.context import Context
from hie.interactions.operations import OperationCall, operation
from hie.interactions.result import Result

MATCH_DEFAULT_COUNT = 10
MATCH_MAX_COUNT = 100
_VALUE_KEYS = ("valueString", "valueBoolean", "valueInteger", "valueCode", "valueUri", "valueReference",
               "valueIdentifier", "valueDecimal", "valuePositiveInt", "valueId", "resource")


# --- parameters ----------------------------------------------------------------------------


def _params(call: OperationCall) -> list[tuple[str, Any]]:
    """(name, value) pairs: the query string, then a POSTed Parameters (or bare Patient)."""
    out: list[tuple[str, Any]] = list(call.params)
    body = call.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            if not isinstance(p, dict) or not p.get("name"):
                continue
            value = next((p[k] for k in _VALUE_KEYS if k in p), None)
            out.append((p["name"], value))
    elif isinstance(body, dict) and body.get("resourceType") == "Patient":
        out.append(("resource", body))
    elif body is not None:
        raise InvalidRequest(f"${call.name} expects a Parameters resource", expression=["Parameters"])
    return out


def _all(params: list[tuple[str, Any]], name: str) -> list[Any]:
    return [v for n, v in params if n == name]


def _one(params: list[tuple[str, Any]], name: str) -> Any:
    values = _all(params, name)
    if len(values) > 1:
        raise InvalidRequest(f"parameter {name} is given {len(values)} times", expression=[name])
    return values[0] if values else None


def _bool(params: list[tuple[str, Any]], name: str) -> bool:
    v = _one(params, name)
    if v is None or isinstance(v, bool):
        return bool(v)
    if str(v).lower() in ("true", "false"):
        return str(v).lower() == "true"
    raise InvalidRequest(f"parameter {name} must be true or false", expression=[name])


def _int(params: list[tuple[str, Any]], name: str) -> int | None:
    v = _one(params, name)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise InvalidRequest(f"parameter {name} must be an integer", expression=[name]) from None


def _patient_id(value: Any, name: str) -> str:
    """A Patient from a valueReference, ``Patient/id`` or a bare id."""
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest(f"parameter {name} must reference a Patient", expression=[name])
    parts = ref.rstrip("/").split("/")
    if len(parts) == 1:
        return parts[0]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    raise InvalidRequest(f"parameter {name} must reference a Patient, not {ref!r}", expression=[name])


def _required_patient(call: OperationCall, params: list[tuple[str, Any]], name: str = "patient") -> str:
    if call.level == "instance" and call.res_id:
        return call.res_id
    value = _one(params, name)
    if value is None:
        raise InvalidRequest(f"parameter {name} is required", expression=[name])
    return _patient_id(value, name)


def _split_token(text: str, name: str) -> tuple[str, str]:
    if not isinstance(text, str) or "|" not in text:
        raise InvalidRequest(f"{name} must be system|value", expression=[name])
    system, value = text.split("|", 1)
    if not system or not value:
        raise InvalidRequest(f"{name} must be system|value", expression=[name])
    return system, value


# --- Patient/$match ------------------------------------------------------------------------


@operation("match", level="type", types=("Patient",), allow_get=False,
           definition="http://hl7.org/fhir/OperationDefinition/Patient-match")
def match(ctx: Context, call: OperationCall) -> Result:
    params = _params(call)
    resource = _one(params, "resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise InvalidRequest("$match needs a Patient in parameter 'resource'", expression=["resource"])
    only_certain = _bool(params, "onlyCertainMatches")
    count = _int(params, "count")
    if count is not None and count < 1:
        raise InvalidRequest("count must be at least 1", expression=["count"])
    count = min(count or MATCH_DEFAULT_COUNT, MATCH_MAX_COUNT)
    service = service_of(ctx)
    matches = service.match(ctx.repo.conn, extract_features(resource), load=lambda _c, pks: ctx.repo.load_pks(pks))
    if only_certain:
        certain = [m for m in matches if m.score.grade == CERTAIN]
        matches = certain if len(certain) == 1 else []
    entries: list[dict[str, Any]] = []
    for m in matches:
        if len(entries) >= count:
            break
        shown = m.stored
        body = shown.resource() if shown is not None else None
        person = store.person(ctx.repo.conn, m.person_key)
        if person is not None and person.has_patient:
            regional = ctx.repo.current("Patient", m.person_key)
            if regional is not None and not regional.deleted:
                shown, body = regional, regional_view(ctx.repo, regional.resource())
        if shown is None or body is None:
            continue
        entries.append({
            "fullUrl": ctx.full_url("Patient", shown.res_id),
            "resource": body,
            "search": {"extension": [match_grade_extension(m.score.grade)], "mode": "match",
                       "score": search_score(m.score.score, service.config.thresholds)},
        })
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    if not entries:
        del bundle["entry"]
    return Result(200, bundle)


# --- Patient/$ihe-pix ----------------------------------------------------------------------


def _known_domain(ctx: Context, system: str, regional: str) -> bool:
    """Whether a Patient the caller may see has an identifier in ``system`` (the answer
    must not reveal identifiers of Patients hidden from the caller)."""
    if system in (regional, INSURANCE_MEMBER_ID_SYSTEM) or system.startswith(FACILITY_PATIENT_ID_PREFIX):
        return True
    return store.identifier_system_visible(ctx.repo.conn, system, ctx.access)


@operation("ihe-pix", level="type", types=("Patient",),
           definition="https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix")
def ihe_pix(ctx: Context, call: OperationCall) -> Result:
    params = _params(call)
    source = _one(params, "sourceIdentifier")
    if source is None:
        raise InvalidRequest("sourceIdentifier is required", expression=["sourceIdentifier"])
    if isinstance(source, dict):
        system, value = source.get("system") or "", source.get("value") or ""
    else:
        system, value = _split_token(source, "sourceIdentifier")
    service = service_of(ctx)
    regional = service.config.regional_system
    if not _known_domain(ctx, system, regional):
        raise InvalidRequest(f"sourceIdentifier Assigning Authority not found: {system}",
                             expression=["sourceIdentifier"])
    targets: list[str] = []
    for t in _all(params, "targetSystem"):
        targets.extend(s for s in str(t).split(",") if s)
    for t in targets:
        if not _known_domain(ctx, t, regional):
            raise Forbidden(f"targetSystem not found: {t}", expression=["targetSystem"])
    found = ctx.repo.find_pks("Patient", [("identifier", f"{system}|{value}")])
    source_ids = [st.res_id for st in ctx.repo.load_pks(found) if not st.deleted]
    if not source_ids:
        raise NotFound(f"sourceIdentifier Patient Identifier not found: {system}|{value}",
                       expression=["sourceIdentifier"])
    out: list[dict[str, Any]] = []
    seen_identifiers: set[tuple[str, str]] = {(system, value)}
    for pid in service.same_person(ctx.repo.conn, source_ids):
        if pid in source_ids:
            continue
        st = ctx.repo.current("Patient", pid)
        if st is None or st.deleted:
            continue  # not visible to the caller, or gone
        res = st.resource()
        identifiers = [i for i in res.get("identifier") or () if isinstance(i, dict) and i.get("system")
                       and i.get("value") and (not targets or i["system"] in targets)]
        if targets and not identifiers:
            continue
        for ident in identifiers:
            k = (ident["system"], ident["value"])
            if k not in seen_identifiers:
                seen_identifiers.add(k)
                out.append({"name": "targetIdentifier",
                            "valueIdentifier": {"use": ident.get("use", "official"), "system": k[0], "value": k[1]}
                            if ident.get("use") else {"system": k[0], "value": k[1]}})
        out.append({"name": "targetId", "valueReference": {"reference": f"Patient/{pid}"}})
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if out:
        body["parameter"] = out
    return Result(200, body)


# --- staff actions -------------------------------------------------------------------------


def _action_result(ctx: Context, result: ActionResult) -> Result:
    params: list[dict[str, Any]] = [{"name": "action", "valueCode": result.action}]
    if result.event is not None:
        params.append({"name": "event", "valueInteger": result.event})
    if result.person_key is not None:
        params.append({"name": "regionalPatient", "valueReference": {"reference": f"Patient/{result.person_key}"}})
    for pid, (old, new) in sorted(result.moved.items()):
        params.append({"name": "moved", "part": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}},
            {"name": "fromKey", "valueString": old}, {"name": "toKey", "valueString": new}]})
    params.append({"name": "rekeyed", "part": [
        {"name": "resources", "valueInteger": result.rekeyed.resources},
        {"name": "versions", "valueInteger": result.rekeyed.versions},
        {"name": "indexRows", "valueInteger": result.rekeyed.index_rows}]})
    return Result(200, {"resourceType": "Parameters", "parameter": params})


def _counter_identification(call: OperationCall, params: list[tuple[str, Any]], regional: str
                            ) -> tuple[str | None, str | None]:
    """(system, value) of the identification a ``$link`` names, if any."""
    system = value = None
    ident = _one(params, "identifier")
    if isinstance(ident, dict):
        system, value = ident.get("system"), ident.get("value")
    elif isinstance(ident, str):
        system, value = _split_token(ident, "identifier")
    if _one(params, "memberId"):
        system, value = INSURANCE_MEMBER_ID_SYSTEM, str(_one(params, "memberId"))
    if _one(params, "regionalId"):
        system, value = regional, str(_one(params, "regionalId"))
    if system and system not in (INSURANCE_MEMBER_ID_SYSTEM, regional):
        raise InvalidRequest(f"identifier system {system} is not an identification the counter can link with "
                             f"({INSURANCE_MEMBER_ID_SYSTEM} or {regional})", expression=["identifier"])
    return system, value


@operation("link", level="type", types=("Patient",), write=True, allow_get=False)
@operation("link", level="instance", types=("Patient",), write=True, allow_get=False)
def link(ctx: Context, call: OperationCall) -> Result:
    """Link at the counter: ``patient`` + ``identifier`` (insured-person id or regional
    card number), or ``memberId`` / ``regionalId`` strings, or ``target`` (a Patient).
    Facility staff: a target must be their own record, and an identification is recorded
    for the operator's review (see :mod:`hie.identity.authz`)."""
    auth = authz.require_staff(ctx.principal)
    params = _params(call)
    pid = _required_patient(call, params)
    service = service_of(ctx)
    conn = ctx.repo.conn
    system, value = _counter_identification(call, params, service.config.regional_system)
    target = _patient_id(_one(params, "target"), "target") if _one(params, "target") is not None else None
    authz.own_record(ctx.repo, auth, pid)
    if target is not None:
        authz.own_record(ctx.repo, auth, target)
        authz.within_facility(conn, auth, [pid, target])
    elif not auth.region_wide and system and value:
        return _action_result(ctx, service.record_identification(conn, pid, actor=auth.actor, system=system,
                                                                 value=value))
    result = service.link_at_counter(conn, pid, actor=auth.actor, system=system, value=value, target=target)
    return _action_result(ctx, result)


@operation("unlink", level="type", types=("Patient",), write=True, allow_get=False)
@operation("unlink", level="instance", types=("Patient",), write=True, allow_get=False)
def unlink(ctx: Context, call: OperationCall) -> Result:
    auth = authz.require_staff(ctx.principal)
    params = _params(call)
    pid = _required_patient(call, params)
    authz.own_record(ctx.repo, auth, pid)
    return _action_result(ctx, service_of(ctx).unlink(ctx.repo.conn, pid, actor=auth.actor))


@operation("merge", level="type", types=("Patient",), write=True, allow_get=False)
def merge(ctx: Context, call: OperationCall) -> Result:
    auth = authz.require_staff(ctx.principal)
    authz.require_region_wide(auth, "merging regional persons")
    params = _params(call)
    source = _required_patient(call, params, "source-patient")
    target = _one(params, "target-patient")
    if target is None:
        raise InvalidRequest("parameter target-patient is required", expression=["target-patient"])
    result = service_of(ctx).merge(ctx.repo.conn, source, _patient_id(target, "target-patient"), actor=auth.actor)
    return _action_result(ctx, result)


@operation("unmerge", level="type", types=("Patient",), write=True, allow_get=False)
def unmerge(ctx: Context, call: OperationCall) -> Result:
    auth = authz.require_staff(ctx.principal)
    authz.require_region_wide(auth, "undoing a merge")
    params = _params(call)
    event = _int(params, "event")
    if event is None:
        raise InvalidRequest("parameter event (the merge event id) is required", expression=["event"])
    return _action_result(ctx, service_of(ctx).unmerge(ctx.repo.conn, event, actor=auth.actor))


def review_parameters(items: list[store.ReviewItem]) -> dict[str, Any]:
    params = []
    for item in items:
        parts: list[dict[str, Any]] = [
            {"name": "id", "valueInteger": item.pk},
            {"name": "patient", "valueReference": {"reference": f"Patient/{item.patient_id}"}},
            {"name": "candidate", "valueReference": {"reference": f"Patient/{item.candidate_id}"}},
            {"name": "score", "valueDecimal": item.score},
            {"name": "grade", "valueCode": item.grade},
            {"name": "status", "valueCode": item.status},
        ]
        parts += [{"name": "level", "part": [{"name": "field", "valueString": k}, {"name": "value", "valueCode": v}]}
                  for k, v in sorted(item.levels.items())]
        params.append({"name": "item", "part": parts})
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if params:
        body["parameter"] = params
    return body


@operation("identity-review", level="type", types=("Patient",), write=True)
def identity_review(ctx: Context, call: OperationCall) -> Result:
    auth = authz.require_staff(ctx.principal)
    params = _params(call)
    conn = ctx.repo.conn
    if call.method == "GET":
        status = _one(params, "status") or "open"
        count = min(_int(params, "_count") or 100, 1000)
        return Result(200, review_parameters(authz.review_items(conn, auth, None if status == "all" else status,
                                                                count)))
    item_pk = _int(params, "item")
    action = _one(params, "action")
    if item_pk is None or not action:
        raise InvalidRequest("POST $identity-review needs item and action (link | not-a-match)",
                             expression=["item" if item_pk is None else "action"])
    item = authz.review_item(conn, auth, item_pk)
    if action == "link":
        authz.within_facility(conn, auth, [item.patient_id, item.candidate_id])
    result = service_of(ctx).decide(conn, item_pk, str(action), actor=auth.actor)
    return _action_result(ctx, result)
