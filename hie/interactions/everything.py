"""``Patient/{id}/$everything``: the patient and every resource in their compartment.

Built on the compartment search, so the caller's access predicate applies to every row,
to the total and to the paging links exactly as for any search; a patient the caller
cannot see answers 404. Supported inputs: ``_count``, ``_offset`` (paging), ``_since``
(resources updated since an instant) and ``_type`` (comma-separated resource types).
The Patient itself comes first on the page that holds it.

Spec: https://hl7.org/fhir/R4/patient-operation-everything.html
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from hie.clock import parse_instant_us
from hie.errors import InvalidRequest
from hie.interactions.context import Context
from hie.interactions.operations import OperationCall, operation
from hie.interactions.result import Result

PASSED = ("_count", "_offset", "_type")


@operation("everything", level="instance", types=("Patient",), returns="compartment",
           definition="http://hl7.org/fhir/OperationDefinition/Patient-everything")
def everything(ctx: Context, call: OperationCall) -> Result:
    from hie.interactions.search import search_bundle

    assert call.res_id
    since = next((v for k, v in call.params if k == "_since"), None)
    if since:  # checked here: an error names _since as sent, not the _lastUpdated it becomes
        try:
            parse_instant_us(since)
        except ValueError:
            raise InvalidRequest(f"_since must be a FHIR instant, got {since!r}", expression=["_since"]) from None
    patient = ctx.repo.read("Patient", call.res_id)  # 404 / 410 exactly as a read
    params = [(k, v) for k, v in call.params if k in PASSED]
    if since:
        params.append(("_lastUpdated", f"ge{since}"))
    bundle = search_bundle(ctx, None, params, compartment=("Patient", call.res_id))
    # The compartment search returns the Patient itself (once, subject to _since/_type and
    # paging); on the page that holds it, it goes first.
    entries = bundle.get("entry", [])
    own = ctx.full_url("Patient", patient.res_id)
    first = [e for e in entries if e.get("fullUrl") == own]
    bundle["entry"] = first + [e for e in entries if e.get("fullUrl") != own]
    for link in bundle.get("link", []):
        link["url"] = _as_sent(link["url"], own, since)
    return Result(200, bundle)


def _as_sent(url: str, own: str, since: str | None) -> str:
    """A paging link of the compartment search (``Patient/<id>/*?_lastUpdated=ge<since>``) as
    the operation the client called (``Patient/<id>/$everything?_since=<since>``): the
    rewrite stays internal, and the link pages the operation."""
    parts = urlsplit(url)
    if not parts.path.endswith("/*"):
        return url
    query = [("_since", since) if since and (k, v) == ("_lastUpdated", f"ge{since}") else (k, v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return f"{own}/$everything?{urlencode(query)}"
