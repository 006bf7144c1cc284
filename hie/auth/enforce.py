"""Which SMART v2 permission each FHIR interaction needs, and the check.

Every request is parsed once by the interaction table (:mod:`hie.interactions.table`);
its row names the letters and the type they apply to, and every (resource type, letter)
pair must be granted by the token's scopes: ``c`` create, ``r`` read (read, vread,
instance history, ``_include``/``_revinclude`` targets), ``u`` update and patch, ``d``
delete, ``s`` search (type, system and compartment search, type and system history).
Conditional update/patch/delete also need ``s`` (they search first); so does a
conditional create (``If-None-Exist``). A system-wide search or history without ``_type``
needs the permission on ``*``; a compartment search over ``*`` needs it on every type of
the Patient compartment. ``HEAD`` needs what ``GET`` needs.

A search needs, besides its own type(s), every type its parameters touch, whatever the
transport (query string, POST ``_search`` form body, Bundle entry): ``_include`` and
``_revinclude`` (any modifier, ``:iterate`` included) need ``r`` on what they add; ``_has``
needs ``s`` on each type it filters by; a chained parameter needs ``s`` on every type of
its chain (a link that may point at any type needs ``*``).

Operations name their letters (``Operation.scope``; default ``r``, ``cu`` for writing
operations) on the type they are invoked on (``*`` at system level); an operation that
returns a compartment (``$everything``) also needs ``r`` on every type it may return (the
``_type`` it is given, else every type of the Patient compartment). A Bundle needs, per
entry, what that entry would need on its own, its absolute URLs resolved against the
configured base.

Which scope contexts count depends on who asks: a backend client uses ``system/``
scopes, a clinician ``user/`` (and ``patient/`` within a launch patient), a patient
``patient/`` only. ``patient/`` scopes confine the request to the launch patient's
compartment (:mod:`hie.auth.compartment`: reads outside it are absent, 404; writes about
anyone else are refused, 403); within it the consent predicate
(:mod:`hie.storage.access`) still decides what is visible.

AuditEvents are written by the node only: create, update, patch and delete of
``AuditEvent`` answer 405 for everyone.

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-fhir-resources
"""

from __future__ import annotations

from typing import Any

from hie.auth.scopes import permits
from hie.errors import FhirError, Forbidden, MethodNotAllowed
from hie.fhir.types import SUPPORTED_TYPES
from hie.interactions.table import Parsed, parse, relative_to_base
from hie.principal import Principal

Need = tuple[str, str]  # (resource type or "*", letter)

READ_ONLY_TYPES = frozenset({"AuditEvent"})
# A reference parameter whose targets include every type but these "may point at any type".
_ANY_TARGET = frozenset(SUPPORTED_TYPES) - {"Parameters", "SubscriptionStatus"}
_INCLUDES = ("_include", "_revinclude")


def contexts_of(principal: Principal) -> tuple[str, ...]:
    if principal.kind in ("client", "system"):
        return ("system",)
    if principal.kind == "patient":
        return ("patient",)
    if principal.kind == "user":
        return ("user", "patient") if principal.patient_id else ("user",)
    return ()


def _types_param(params: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for k, v in params:
        if k == "_type":
            out.extend(t.strip() for t in v.split(",") if t.strip())
    return out or ["*"]


def _targets(registry: Any, types: list[str], code: str) -> list[str]:
    """The types a reference parameter ``code`` of ``types`` may point at; ``*`` when any."""
    if "*" in types or registry is None:
        return ["*"]
    out: list[str] = []
    for t in types:
        p = registry.get(t, code)
        targets = list(getattr(p, "targets", ()) or ())
        if not targets or _ANY_TARGET <= set(targets):
            return ["*"]
        out.extend(x for x in targets if x not in out)
    return out


def _include_needs(params: list[tuple[str, str]], registry: Any) -> list[Need]:
    """``_include``/``_revinclude`` (any modifier, ``:iterate`` too) read their targets."""
    needs: list[Need] = []
    for k, v in params:
        if k.split(":", 1)[0] not in _INCLUDES or not v:
            continue
        parts = v.split(":")
        if v == "*" or parts[0] == "*":
            needs.append(("*", "r"))
        elif k.startswith("_revinclude"):
            needs.append((parts[0], "r"))
        elif len(parts) >= 3:
            needs.append((parts[2], "r"))
        else:
            needs.extend((t, "r") for t in _targets(registry, [parts[0]], parts[1] if len(parts) > 1 else "*"))
    return needs


def _chain_needs(types: list[str], key: str, registry: Any) -> list[Need]:
    """A chained parameter (``subject:Patient.organization.name``) filters by every type on
    its chain; a link without ``:Type`` may point at any of its parameter's targets."""
    links = key.split(".")
    needs: list[Need] = []
    current = types
    for link in links[:-1]:
        code, _, typ = link.partition(":")
        current = [typ] if typ else _targets(registry, current, code)
        needs.extend((t, "s") for t in current)
        if "*" in current:
            break
    return needs


def _has_needs(key: str, registry: Any) -> list[Need]:
    """``_has:Type:ref:param`` (nested ``_has`` too) filters by each ``Type`` it names."""
    parts = key.split(":")
    needs: list[Need] = []
    i = 0
    last = "*"
    while i + 1 < len(parts) and parts[i] == "_has":
        last = parts[i + 1]
        needs.append((last, "s"))
        i += 3
    rest = ":".join(parts[i:])
    if "." in rest:
        needs.extend(_chain_needs([last], rest, registry))
    return needs


def search_needs(types: list[str], params: list[tuple[str, str]], registry: Any) -> list[Need]:
    """What the parameters of a search over ``types`` read besides ``types`` themselves."""
    needs = _include_needs(params, registry)
    for k, _v in params:
        if k.startswith("_has:"):
            needs.extend(_has_needs(k, registry))
        elif "." in k and not k.startswith("_"):
            needs.extend(_chain_needs(types, k, registry))
    return needs


def compartment_types(registry: Any) -> list[str]:
    """Every type a Patient compartment search may return (``*`` without a registry)."""
    comp = getattr(registry, "compartment", None)
    if not comp:
        return ["*"]
    return ["Patient", *(t for t in comp if t != "Patient")]


def _op_needs(parsed: Parsed, registry: Any) -> list[Need]:
    op = parsed.operation
    letters = op.scope or ("cu" if op.write else "r")
    needs = [(parsed.res_type or "*", ch) for ch in letters]
    if op.returns == "compartment":
        types = [t for t in _types_param(parsed.params) if t != "*"] or compartment_types(registry)
        needs.extend((t, "r") for t in types)
        needs.extend(search_needs(types, parsed.params, registry))
    needs.extend((t, "r") for t in op.reads)
    return needs


def needs(parsed: Parsed, registry: Any = None) -> list[Need] | None:
    """What ``parsed`` needs; None for a public endpoint."""
    row = parsed.row
    if row.on == "none":
        return None if row.name == "capabilities" else []
    if row.on == "operation":
        return _op_needs(parsed, registry)
    if row.on == "types":
        types = _types_param(parsed.params)
    elif row.on == "compartment":
        ctype = parsed.compartment_type or "*"
        types = compartment_types(registry) if ctype == "*" else [ctype]
    else:
        types = [parsed.res_type or "*"]
    out = [(t, ch) for ch in row.letters for t in types]
    if row.searches:
        out.extend(search_needs(types, parsed.params, registry))
    return out


def needs_for(method: str, path: str, query: str, registry: Any = None,
              body_params: list[tuple[str, str]] | None = None) -> list[Need] | None:
    """What a request to ``path`` (below ``/fhir``) needs; None for public endpoints. A
    request the table cannot parse needs nothing here: it is answered 404/405 unrun."""
    try:
        parsed = parse(method, path, query, body_params)
    except FhirError:
        return []
    return needs(parsed, registry)


def needs_for_bundle(bundle: Any, registry: Any = None, base: str = "") -> list[Need]:
    """What every entry of a batch/transaction needs, as it would on its own (HEAD as GET;
    ``ifNoneExist`` and conditional references as searches). Absolute URLs are resolved against ``base``; one for
    another server is refused (400)."""
    out: list[Need] = []
    for i, entry in enumerate((bundle.get("entry") or []) if isinstance(bundle, dict) else []):
        req = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("url"), str):
            continue  # malformed: the bundle processor reports it
        rel = relative_to_base(req["url"], base, where=f"Bundle.entry[{i}].request.url")
        path, _, query = rel.partition("?")
        method = str(req.get("method", "GET")).upper()
        out.extend(needs_for(method, path, query, registry) or [])
        ine = req.get("ifNoneExist")
        if isinstance(ine, str) and ine:
            out.extend(_if_none_exist_needs(path, ine, registry))
        out.extend(_conditional_reference_needs(entry.get("resource"), registry))
    return out


def _conditional_reference_needs(resource: Any, registry: Any) -> list[Need]:
    """A transaction resolves a conditional reference (``Patient?identifier=...``) by
    searching its type: that needs what the search would."""
    from hie.fhir.references import iter_references

    out: list[Need] = []
    for _path, ref in iter_references(resource) if isinstance(resource, dict) else ():
        head, sep, criteria = ref["reference"].partition("?")
        if sep and "/" not in head and not head.startswith(("urn:", "#")):
            out.extend(if_none_exist_needs(head, criteria, registry))
    return out


def if_none_exist_needs(res_type: str, criteria: str, registry: Any = None) -> list[Need]:
    """A conditional create searches ``res_type`` with ``criteria`` first."""
    from urllib.parse import parse_qsl

    params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    return [(res_type, "s"), *search_needs([res_type], params, registry)]


def _if_none_exist_needs(path: str, criteria: str, registry: Any) -> list[Need]:
    res_type = path.strip("/").split("/")[0] or "*"
    return if_none_exist_needs(res_type, criteria, registry)


def check(principal: Principal, needs: list[Need]) -> None:
    """Raise 405 for AuditEvent writes, 403 for a permission the token lacks."""
    for res_type, letter in needs:
        if res_type in READ_ONLY_TYPES and letter in "cud":
            raise MethodNotAllowed(f"{res_type} resources are written by the node only; "
                                   "they cannot be created, changed or deleted through the API")
    if principal.is_system and principal.token_id is None:
        return  # in-process system principal (ingest, maintenance): no token, no scopes
    contexts = contexts_of(principal)
    missing = list(dict.fromkeys(f"{t}.{ch}" for t, ch in needs if not permits(principal.scopes, contexts, t, ch)))
    if missing:
        shown = ", ".join(f"{'/'.join(contexts) or '?'}/{m}" for m in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise Forbidden(f"The access token's scopes do not allow this request; it needs {shown}{more}")

