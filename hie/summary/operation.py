"""``Patient/[id]/$summary`` and ``Patient/$summary?identifier=…``: the IPS document of a
patient, built from what the caller may see (GET, or POST with a ``Parameters`` body).

Inputs (IPS OperationDefinition ``summary``): ``identifier`` (type level: a token
``system|value`` or, in a POSTed Parameters, a ``valueIdentifier``), ``profile`` (only the
IPS Bundle profile is produced; another one is refused with 400). The node adds
``language`` (``ja``, the default, or ``en``) for the narratives.

A patient the caller cannot see answers 404 exactly as an unknown one (instance level: a
read of the Patient; type level: the identifier search finds nothing). Everything is read
through the caller's repository (:func:`hie.summary.record.collect`). The audit trail
names the patient and every resource the document carries (:mod:`hie.audit.http` reads
them from the document).

Spec: https://hl7.org/fhir/uv/ips/STU2/OperationDefinition-summary.html
"""

from __future__ import annotations

from typing import Any

from hie.errors import InvalidRequest, MultipleMatches, NotFound
from hie.interactions.context import Context
from hie.interactions.operations import OperationCall, operation
from hie.interactions.result import Result
from hie.summary.ips import IPS, build_ips
from hie.summary.record import collect
from hie.summary.sections import TYPES_USED

DEFINITION = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
IPS_BUNDLE = f"{IPS}/Bundle-uv-ips"
LANGUAGES = ("ja", "en")
#: Types the document carries besides the Patient compartment (scope-checked too).
READS = ("Organization", "Medication", "Device")


def inputs(call: OperationCall) -> dict[str, list[str]]:
    """Operation inputs from the query string and a POSTed Parameters, by name."""
    out: dict[str, list[str]] = {}
    for k, v in call.params:
        out.setdefault(k, []).append(v)
    body = call.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            name, value = p.get("name"), _value(p)
            if name and value is not None:
                out.setdefault(str(name), []).append(value)
    elif body is not None:
        raise InvalidRequest("$summary takes a Parameters resource as its body", expression=["Parameters"])
    return out


def _value(p: dict[str, Any]) -> str | None:
    ident = p.get("valueIdentifier")
    if isinstance(ident, dict):
        return f"{ident.get('system', '')}|{ident.get('value', '')}" if ident.get("system") else str(
            ident.get("value", ""))
    for key in ("valueString", "valueToken", "valueCanonical", "valueUri", "valueCode"):
        if p.get(key) is not None:
            return str(p[key])
    return None


def _one(args: dict[str, list[str]], name: str) -> str | None:
    vals = args.get(name) or []
    if len(vals) > 1:
        raise InvalidRequest(f"{name} may be given only once", expression=[name])
    return vals[0] if vals else None


def _options(args: dict[str, list[str]]) -> str:
    if "_type" in args:  # the scope check would take it as the types returned: refuse, never ignore
        raise InvalidRequest("$summary does not take _type: the document holds every IPS section",
                             expression=["_type"])
    profile = _one(args, "profile")
    if profile is not None and profile.split("|", 1)[0] != IPS_BUNDLE:
        raise InvalidRequest(f"profile {profile!r} is not supported: this node produces {IPS_BUNDLE}",
                             expression=["profile"])
    lang = _one(args, "language") or "ja"
    if lang not in LANGUAGES:
        raise InvalidRequest(f"language must be one of {', '.join(LANGUAGES)}", expression=["language"])
    return lang


def _document(ctx: Context, patient_id: str, lang: str) -> Result:
    record = collect(ctx.repo, patient_id, base_url=ctx.base_url, types=TYPES_USED)
    bundle = build_ips(record, now=ctx.repo.clock.now_us(), lang=lang, base_url=ctx.base_url)
    return Result(200, bundle)


@operation("summary", level="instance", types=("Patient",), returns="compartment", definition=DEFINITION,
           reads=READS)
def summary_instance(ctx: Context, call: OperationCall) -> Result:
    assert call.res_id
    args = inputs(call)
    lang = _options(args)
    if "identifier" in args:
        raise InvalidRequest("identifier is for Patient/$summary, not for one patient", expression=["identifier"])
    return _document(ctx, call.res_id, lang)


@operation("summary", level="type", types=("Patient",), returns="compartment", definition=DEFINITION,
           reads=READS)
def summary_type(ctx: Context, call: OperationCall) -> Result:
    args = inputs(call)
    lang = _options(args)
    ident = _one(args, "identifier")
    if not ident:
        raise InvalidRequest("Patient/$summary needs an identifier (or use Patient/[id]/$summary)",
                             expression=["identifier"])
    if not ident.rpartition("|")[2]:  # 'system|' is a search wildcard, not one patient's identifier
        raise InvalidRequest("identifier needs a value ('system|value' or 'value')", expression=["identifier"])
    page = ctx.repo.search("Patient", [("identifier", ident)], count=2, base_url=ctx.base_url, total=False)
    if not page.rows:
        raise NotFound("No patient with that identifier is known")
    if len(page.rows) > 1:
        raise MultipleMatches("The identifier names more than one patient; use Patient/[id]/$summary")
    return _document(ctx, page.rows[0][2], lang)
