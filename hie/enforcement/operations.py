"""Operations of consent enforcement.

* ``POST Patient/{id}/$break-glass`` (``reason``): an emergency clinician (role
  ``emergency-clinician``, token purpose of use ``ETREAT``: :class:`consent.policy.BreakGlassRule`)
  declares an emergency for a patient. For the configured time (default 24 h) the clinician,
  still acting for ``ETREAT``, sees that patient's emergency dataset (allergies, active
  problems, current medications, recent labs, demographics). Each declaration is stored,
  audited like every call, listed for the patient and reported to the operator.
* ``GET Patient/{id}/$break-glass-log``: the declarations about a patient, for the patient
  themself and for operators.
* ``GET /$break-glass-report``: every declaration in a period (operators).
* ``GET|POST /$disaster-mode`` (``mode`` = on | off): the region-wide disaster switch
  (operators): disaster-response accounts then see every patient's emergency dataset.
* ``GET Patient/{id}/$consent-explain?facility=<code>[&resource=Type/id][&practitioner=id][&purpose=code]``:
  for operators, which consent provisions permit or deny and why.

Spec: https://hl7.org/fhir/R4/operations.html ; https://hl7.org/fhir/R4/consent.html
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from consent.explain import explain
from consent.request import ResourceFacts
from hie.clock import instant
from hie.enforcement import declarations, facilities
from hie.enforcement.grants import parse_stored_consent
from hie.enforcement.policy import OPERATOR_ROLE, principal_key
from hie.errors import Forbidden, InvalidRequest, NotFound
from hie.interactions.context import Context
from hie.interactions.operations import OperationCall, operation
from hie.interactions.result import Result


def param(call: OperationCall, name: str) -> str | None:
    """A string parameter from the query, form, or a Parameters body."""
    for k, v in call.params:
        if k == name:
            return v
    body = call.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or []:
            if p.get("name") == name:
                for key, value in p.items():
                    if key.startswith("value"):
                        return str(value)
    return None


def _patient_key(ctx: Context, patient_id: str) -> str:
    """The patient key of a stored Patient, looked up by the node itself (not the caller:
    break-the-glass is about a patient the clinician cannot see yet); 404 if none."""
    key = ctx.repo.stored_patient_key(patient_id)
    if key is None:
        raise NotFound(f"Resource Patient/{patient_id} is not known")
    return key


def _policy(ctx: Context) -> Any:
    from consent.policy import DEFAULT_POLICY

    return getattr(ctx.repo.policy, "policy", DEFAULT_POLICY)


def _parameters(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def _require_operator(ctx: Context) -> None:
    if not (ctx.principal.is_system or OPERATOR_ROLE in ctx.principal.roles):
        raise Forbidden("This operation is for operators")


# -- break-the-glass ------------------------------------------------------------------


# A declaration is about reading (it opens read access), so it needs the read scope only.
@operation("break-glass", level="instance", types=("Patient",), write=True, allow_get=False, scope="r")
def break_glass_op(ctx: Context, call: OperationCall) -> Result:
    p = ctx.principal
    policy = _policy(ctx)
    refusals = policy.break_glass.refusals(p.roles, p.purpose_of_use)  # consent.policy.BreakGlassRule
    if refusals:
        raise Forbidden("Break-the-glass refused: " + "; ".join(refusals))
    reason = (param(call, "reason") or "").strip()
    if not reason:
        raise InvalidRequest("Break-the-glass needs a reason", expression=["Parameters.parameter:reason"])
    assert call.res_id
    key = _patient_key(ctx, call.res_id)
    now = ctx.repo.clock.now_us()
    expires = now + int(policy.break_glass.duration.total_seconds() * 1_000_000)
    declarations.declare(ctx.repo, p, key=key, patient_id=call.res_id, reason=reason,
                         principal_key=principal_key(p), declared_at=now, expires_at=expires)
    return Result(200, _parameters(
        {"name": "patient", "valueReference": {"reference": f"Patient/{call.res_id}"}},
        {"name": "declared", "valueInstant": instant(now)},
        {"name": "expires", "valueInstant": instant(expires)},
        {"name": "dataset", "valueString": ", ".join(sorted(policy.emergency_dataset.data_classes))},
    ))


def _declarations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": "declaration", "part": [
            {"name": "who", "valueString": r["principal"]},
            *([{"name": "facility", "valueString": r["organization"]}] if r["organization"] else []),
            {"name": "patient", "valueReference": {"reference": f"Patient/{r['patient_id']}"}},
            {"name": "reason", "valueString": r["reason"]},
            {"name": "declared", "valueInstant": instant(r["declared_at"])},
            {"name": "expires", "valueInstant": instant(r["expires_at"])},
        ]}
        for r in rows
    ]


@operation("break-glass-log", level="instance", types=("Patient",))
def break_glass_log(ctx: Context, call: OperationCall) -> Result:
    assert call.res_id
    key = _patient_key(ctx, call.res_id)
    p = ctx.principal
    # the patient themself: the same resolver the access predicate uses
    own = bool(p.kind == "patient" and p.patient_id and ctx.repo.patient_key(p.patient_id) == key)
    if not (own or p.is_system or OPERATOR_ROLE in p.roles):
        # Not the patient, not an operator: answer as if the patient were unknown.
        raise NotFound(f"Resource Patient/{call.res_id} is not known")
    return Result(200, _parameters(*_declarations(declarations.declarations(ctx.repo, patient_key=key))))


@operation("break-glass-report", level="system")
def break_glass_report(ctx: Context, call: OperationCall) -> Result:
    _require_operator(ctx)
    since = param(call, "since")
    since_us = None
    if since:
        from hie.clock import parse_instant_us

        try:
            since_us = parse_instant_us(since)
        except ValueError:
            raise InvalidRequest(f"since must be a date or instant, got {since!r}", expression=["since"]) from None
    return Result(200, _parameters(*_declarations(declarations.declarations(ctx.repo, since_us=since_us))))


# -- disaster mode --------------------------------------------------------------------


@operation("disaster-mode", level="system", write=True)
def disaster_mode(ctx: Context, call: OperationCall) -> Result:
    _require_operator(ctx)
    if call.method == "POST":
        mode = (param(call, "mode") or "").lower()
        if mode not in ("on", "off"):
            raise InvalidRequest("mode must be 'on' or 'off'", expression=["Parameters.parameter:mode"])
        declarations.set_disaster_mode(ctx.repo, mode == "on", by=principal_key(ctx.principal),
                                       now=ctx.repo.clock.now_us())
    on = declarations.disaster_mode(ctx.repo)
    return Result(200, _parameters({"name": "mode", "valueCode": "on" if on else "off"}))


# -- $consent-explain -----------------------------------------------------------------


def _viewer(ctx: Context, code: str) -> facilities.Facility:
    """The registered, active facility with medical-institution ``code`` (the directory the
    access predicate reads), else 404."""
    facility = facilities.for_repository(ctx.repo, code)
    if facility is None:
        raise NotFound(f"No registered, active facility with medical-institution code {code}",
                       expression=["facility"])
    return facility


@operation("consent-explain", level="instance", types=("Patient",))
def consent_explain(ctx: Context, call: OperationCall) -> Result:
    _require_operator(ctx)
    assert call.res_id
    facility = param(call, "facility")
    if not facility:
        raise InvalidRequest("facility (10-digit medical-institution code) is required", expression=["facility"])
    key = _patient_key(ctx, call.res_id)
    viewer = _viewer(ctx, facility)
    consents = [parse_stored_consent(orjson.loads(c), key) for c in ctx.repo.patient_consents(key)]
    facts = None
    ref = param(call, "resource")
    if ref:
        rtype, _, rid = ref.partition("/")
        row = ctx.repo.record_facts(rtype, rid)
        if row is None or row[1] != key:
            raise NotFound(f"{ref} is not a record of Patient/{call.res_id}", expression=["resource"])
        holder = facilities.for_repository(ctx.repo, row[2]) if row[2] else None
        custodian = holder.org_id if holder is not None else (row[2] or "")
        facts = ResourceFacts.from_resource(orjson.loads(row[0]), patient=key, custodian=custodian)
    now = datetime.fromtimestamp(ctx.repo.clock.now_us() / 1_000_000, timezone.utc)
    result = explain(key, viewer.org_id, consents, now=now, viewer_practitioner=param(call, "practitioner"),
                     purpose=param(call, "purpose") or "TREAT", resource=facts, policy=_policy(ctx),
                     viewer_may_view=viewer.may_view, viewer_may_disclose=viewer.may_disclose)
    parts: list[dict[str, Any]] = [{"name": "explanation", "valueString": result.render()}]
    if result.decision is not None:
        parts.append({"name": "decision", "valueCode": "permit" if result.decision.allowed else "deny"})
    for finding in result.consents:
        parts.append({"name": "consent", "part": [
            {"name": "consent", "valueString": finding.consent_id or ""},
            {"name": "status", "valueCode": finding.status},
            {"name": "inEffect", "valueBoolean": finding.in_effect},
            *({"name": "provision", "part": [
                {"name": "path", "valueString": pf.path},
                {"name": "effect", "valueCode": pf.effect},
                {"name": "applies", "valueBoolean": pf.applies},
                {"name": "why", "valueString": pf.why},
            ]} for pf in finding.provisions),
        ]})
    return Result(200, _parameters(*parts))
