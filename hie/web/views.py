"""The viewer's page handlers (no HTTP framework here beyond the request they read): each
runs FHIR interactions or the summary's ``collect`` as the session's principal
(:mod:`hie.web.fhir`), builds the page's blocks (:mod:`hie.web.pages`) and audits what the
page showed (:mod:`hie.web.audit`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from consent.periods import NODE_TZ
from hie.errors import FhirError, Forbidden, InvalidRequest, NotFound
from hie.fhir.naming import FACILITY_PATIENT_ID_PREFIX, MEDICAL_INSTITUTION_SYSTEM
from hie.principal import Principal
from hie.summary.medications import DRUG_SYSTEMS
from hie.summary.record import TYPES, collect
from hie.web import audit, fhir, pages as blocks
from hie.web.i18n import catalogue, lang_of
from hie.web.session import Glass, Session, ViewerError, keep, refresh
from hie.web.wareki import age_on, format_both

#: The scopes a patient page needs: what ``collect`` reads, checked as the API checks them.
PAGE_NEEDS = [("Patient", "r"), ("Organization", "s"), ("Medication", "r"), ("Device", "r")] + [
    (t, "s") for t in TYPES]
GLASS_PURPOSES = ("ETREAT", "BTG")


def may_break_glass(node: Any, p: Principal | None) -> bool:
    """Whether ``p`` may ask to break the glass (:class:`consent.policy.BreakGlassRule` roles)."""
    from consent.policy import DEFAULT_POLICY

    rule = getattr(node.policy, "policy", DEFAULT_POLICY).break_glass
    return p is not None and p.organization_id is not None and bool(p.roles & rule.roles)


def code_label(system: str) -> str:
    return DRUG_SYSTEMS.get(system, system)


def when(value: str | None, lang: str) -> str:
    return format_both((value or "")[:10], lang) if value else ""


def glass_until(glass: Glass | None, lang: str) -> str:
    if glass is None:
        return ""
    return datetime.fromtimestamp(glass.expires, tz=NODE_TZ).strftime("%Y-%m-%d %H:%M")


def _lang(request: Any) -> str:
    return lang_of(request.query_params.get("lang"), request.cookies.get("hie_lang"))


def _today(node: Any) -> Any:
    return datetime.fromtimestamp(node.clock.now_us() / 1_000_000, tz=NODE_TZ).date()


def _base(pages: Any, request: Any) -> str:
    from hie.web.session import fhir_base, origin_of

    return fhir_base(pages.node, origin_of(pages.node, request))


# -- patient search --------------------------------------------------------------------


def _criteria(q: dict[str, str], regional_system: str) -> list[tuple[str, str]] | None:
    """FHIR search parameters for the form, or None when nothing was asked."""
    from hie.identity.normalize import nfkc, to_katakana

    out: list[tuple[str, str]] = []
    if q.get("number"):
        system = FACILITY_PATIENT_ID_PREFIX + q["facility"] if q.get("facility") else ""
        out.append(("identifier", f"{system}|{q['number']}" if system else q["number"]))
    if q.get("regional"):
        out.append(("identifier", f"{regional_system}|{q['regional']}"))
    name = nfkc(q.get("name") or "").strip()
    if name:
        first = name.split()[0]
        variants = list(dict.fromkeys([first, to_katakana(first)]))
        out.append(("name", ",".join(v.replace(",", r"\,") for v in variants)))
    if q.get("birthdate"):
        out.append(("birthdate", q["birthdate"]))
    if q.get("gender"):
        out.append(("gender", q["gender"]))
    return out or None


def _name_matches(patient: dict[str, Any], query: str) -> bool:
    """Every word of the query appears in one of the patient's names (width, kana type and
    spacing normalized): the search asked for the first word only."""
    from hie.identity.normalize import normalize_kana, normalize_kanji

    words = query.split()
    if len(words) < 2:
        return True
    texts = [blocks._name_text(n) for n in patient.get("name") or () if isinstance(n, dict)]
    keys = [normalize_kana(t) for t in texts] + [normalize_kanji(t) for t in texts]
    joined = [k.replace(" ", "") for k in keys]
    want_kana = normalize_kana(query).replace(" ", "")
    want_kanji = normalize_kanji(query).replace(" ", "")
    return any(want_kana in k or want_kanji in k for k in joined)


def _facilities(node: Any, principal: Principal, base: str) -> dict[str, str]:
    orgs = fhir.search(node, principal, "Organization", [("_count", "200"), ("active", "true")], base_url=base)
    out: dict[str, str] = {}
    for org in orgs:
        for ident in org.get("identifier") or ():
            if ident.get("system") == MEDICAL_INSTITUTION_SYSTEM and ident.get("value"):
                out[str(ident["value"])] = str(org.get("name") or ident["value"])
    return out


def _facility_of(patient: dict[str, Any], facilities: dict[str, str]) -> str:
    for ident in patient.get("identifier") or ():
        system = str(ident.get("system") or "")
        if system.startswith(FACILITY_PATIENT_ID_PREFIX):
            code = system[len(FACILITY_PATIENT_ID_PREFIX):]
            return f"{facilities.get(code, code)} {ident.get('value', '')}"
    return ""


def search_page(pages: Any, request: Any, session: Session, principal: Principal) -> Any:
    from hie.identity.model import REGIONAL_SYSTEM_DEFAULT

    identity = getattr(pages.node, "identity", None)
    regional = identity.config.regional_system if identity is not None else REGIONAL_SYSTEM_DEFAULT
    node, lang, base = pages.node, _lang(request), _base(pages, request)
    keys = ("facility", "number", "regional", "name", "birthdate", "gender")
    q = {k: request.query_params.get(k, "").strip() for k in keys}
    facilities = _facilities(node, principal, base)
    criteria = _criteria(q, regional)
    results: list[dict[str, Any]] = []
    if criteria:
        found = fhir.search(node, principal, "Patient", [*criteria, ("_count", "50")], base_url=base)
        found = [p for p in found if _name_matches(p, q["name"])]
        today = _today(node)
        for p in found:
            h = blocks.header(p, lang, today)
            results.append({**h, "facility": _facility_of(p, facilities)})
        audit.record(pages.recorder, audit.page_event(
            node, principal, page="patient-search", patient_id=None, shown=[f"Patient/{p['id']}" for p in found],
            address=pages.address(request), query=criteria))
    return pages.render(request, "search.html", session=session, q=q, searched=criteria is not None,
                        results=results, facilities=sorted(facilities.items(), key=lambda kv: kv[1]))


# -- the patient page --------------------------------------------------------------------


def _glass_active(pages: Any, session: Session, principal: Principal, patient_id: str) -> Glass | None:
    """The session's break-the-glass for ``patient_id``, while its emergency-purpose token is
    the one in use and the declaration has not expired."""
    from consent.policy import DEFAULT_POLICY

    g = session.glass
    rule = getattr(pages.node.policy, "policy", DEFAULT_POLICY).break_glass
    if g is not None and (g.expires < time.time() or not rule.is_emergency_purpose(principal.purpose_of_use)):
        session.glass = g = None
    return g if g is not None and g.patient_id == patient_id else None


def patient_page(pages: Any, request: Any, session: Session, principal: Principal, patient_id: str) -> Any:
    node, lang, base = pages.node, _lang(request), _base(pages, request)
    _glass_active(pages, session, principal, patient_id)
    acting = principal
    record = fhir.with_repo(node, acting, PAGE_NEEDS, lambda repo: collect(repo, patient_id, base_url=base),
                            base_url=base)
    all_events = request.query_params.get("all") == "1"
    view = blocks.patient_view(record, lang, _today(node), node.clock.now_us(), all_events=all_events)
    audit.record(pages.recorder, audit.page_event(node, acting, page="patient", patient_id=patient_id,
                                                  shown=view["shown"], address=pages.address(request)))
    may_glass = may_break_glass(node, principal)
    facility = request.query_params.get("facility", "")
    return pages.render(request, "patient.html", session=session, v=view, patient_id=patient_id,
                        may_glass=may_glass, facility=facility, all_events=all_events,
                        per_facility=blocks.TIMELINE_PER_FACILITY)


# -- documents ----------------------------------------------------------------------


def _subject_of(bundle: Any) -> str | None:
    """The Patient id a document Bundle's Composition is about (relative reference), if any."""
    try:
        ref = bundle["entry"][0]["resource"]["subject"]["reference"]
    except (KeyError, IndexError, TypeError):
        return None
    return ref.split("/", 1)[1] if isinstance(ref, str) and ref.startswith("Patient/") else None


def document_page(pages: Any, request: Any, session: Session, principal: Principal, bundle_id: str) -> Any:
    """A stored document Bundle (IPS, referral letter, discharge summary), read as the API
    reads it (404 when hidden); a Bundle that is not a well-formed document is a clear 422."""
    from hie.web.documents import DocumentError, render

    node, lang = pages.node, _lang(request)
    _status, bundle = fhir.interact(node, principal, "GET", f"/Bundle/{bundle_id}", base_url=_base(pages, request))
    try:
        doc = render(bundle, lang)
    except DocumentError as exc:
        doc, error = None, str(exc)
    # audited whatever the rendering: the Bundle was read (and the 422 page names what it holds)
    audit.record(pages.recorder, audit.page_event(node, principal, page="document", patient_id=_subject_of(bundle),
                                                  shown=[f"Bundle/{bundle_id}"], address=pages.address(request),
                                                  status=200 if doc is not None else 422))
    if doc is None:
        return pages.message(request, session, "not_document", 422, error)
    header = blocks.header(doc.subject, lang, _today(node)) if doc.subject else None
    return pages.render(request, "document.html", session=session, d=doc, header=header)


# -- break-the-glass -------------------------------------------------------------------


def declare_glass(pages: Any, request: Any, session: Session, patient_id: str, form: dict[str, str]) -> Any:
    """Reason and purpose, then a token for that purpose (the token endpoint issues it only
    to an emergency-role facility user) and ``$break-glass`` with it."""
    from hie.web.session import origin_of, principal

    node, lang = pages.node, _lang(request)
    t = catalogue(lang)
    reason, purpose = form.get("reason", "").strip(), form.get("purpose", "ETREAT")
    ctx = {"patient_id": patient_id, "reason": reason, "purpose": purpose, "error": None, "reason_error": None}
    if not reason:
        return pages.render(request, "glass.html", session=session, status=400,
                            **{**ctx, "reason_error": t["reason_required"]})
    if purpose not in GLASS_PURPOSES:
        purpose = "ETREAT"
    origin = origin_of(node, request)
    try:
        token = refresh(node, session, origin, purpose=purpose)
        p = principal(node, session, origin, pages.address(request), token=token["access_token"])
        body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]}
        fhir.interact(node, p, "POST", f"/Patient/{patient_id}/$break-glass", body=body, base_url=_base(pages, request))
    except ViewerError:
        return pages.render(request, "glass.html", session=session, status=403, **{**ctx, "error": t["glass_refused"]})
    except NotFound:
        return pages.message(request, session, "not_found", 404)
    except (Forbidden, InvalidRequest) as exc:
        return pages.render(request, "glass.html", session=session, status=exc.status,
                            **{**ctx, "error": f"{t['glass_refused']} ({exc.diagnostics})"})
    from consent.policy import DEFAULT_POLICY

    rule = getattr(node.policy, "policy", DEFAULT_POLICY).break_glass
    keep(session, token)  # the emergency-purpose token is the session's from now on
    session.glass = Glass(patient_id, reason, purpose,
                          time.time() + min(rule.duration.total_seconds(), float(token.get("expires_in", 3600))))
    audit.record(pages.recorder, audit.page_event(node, p, page="break-glass", patient_id=patient_id, shown=[],
                                                  address=pages.address(request)))
    return pages.redirect(f"/viewer/patient/{patient_id}")


# -- EHR launch ------------------------------------------------------------------------


def launch_context(pages: Any, request: Any, form: dict[str, str]) -> Any:
    """An EHR asks for a launch value for one of its patients (bearer token of its facility)."""
    from hie.auth.service import AuthService
    from hie.web import launch
    from hie.web.session import origin_of

    node = pages.node
    origin = origin_of(node, request)
    base = _base(pages, request)
    patient_id = form.get("patient", "")
    try:
        p = AuthService.for_node(node).authenticate_header(
            request.headers.get("authorization"), request_base=origin + "/fhir", network_address=pages.address(request))
        if not p.organization_id:
            raise Forbidden("A launch is made by a facility's EHR (a client or user of a facility)")
        if not patient_id:
            raise InvalidRequest("patient is required", expression=["patient"])
        fhir.interact(node, p, "GET", f"/Patient/{patient_id}", base_url=base)  # 404 as a read
    except FhirError as exc:
        return pages.json(exc.to_outcome(), exc.status, exc.headers)
    value = launch.mint(node, patient_id=patient_id, organization_code=p.organization_id, fhir_base=base)
    audit.record(pages.recorder, audit.page_event(node, p, page="launch-context", patient_id=patient_id, shown=[],
                                                  address=pages.address(request)))
    from urllib.parse import urlencode

    url = f"{origin}/viewer/launch?" + urlencode({"iss": base, "launch": value})
    return pages.json({"launch": value, "url": url})


__all__ = ["age_on", "search_page", "patient_page", "declare_glass", "launch_context"]
