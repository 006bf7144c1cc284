"""Which SMART v2 permission each FHIR interaction needs, and the check.

Every FHIR request is mapped from (method, path, query) to a list of (resource type,
letter) pairs, all of which the token's scopes must grant: ``c`` create, ``r`` read
(read, vread, instance history, ``_include`` targets), ``u`` update and patch, ``d``
delete, ``s`` search (type, system and compartment search, type and system history).
Conditional update/patch/delete also need ``s`` (they search first). A system-wide
search or history without ``_type`` needs the permission on ``*``. Operations name
their letters (``Operation.scope``; default ``r``, ``cu`` for writing operations) on
the type they are invoked on (``*`` at system level). A Bundle needs, per entry, what
that entry would need on its own.

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

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from hie.auth.scopes import permits
from hie.errors import Forbidden, MethodNotAllowed
from hie.principal import Principal

Need = tuple[str, str]  # (resource type or "*", letter)

READ_ONLY_TYPES = frozenset({"AuditEvent"})


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


def _include_needs(res_type: str | None, params: list[tuple[str, str]], registry: Any) -> list[Need]:
    needs: list[Need] = []
    for k, v in params:
        name = k.split(":", 1)[0]
        if name not in ("_include", "_revinclude") or not v:
            continue
        parts = v.split(":")
        if v == "*":
            needs.append(("*", "r"))
        elif name == "_revinclude":
            needs.append((parts[0], "r"))
        elif len(parts) >= 3:
            needs.append((parts[2], "r"))
        else:
            p = registry.get(parts[0], parts[1]) if registry is not None and len(parts) == 2 else None
            targets = getattr(p, "targets", ()) or ("*",)
            needs.extend((t, "r") for t in targets)
    return needs


def _search(types: Iterable[str], params: list[tuple[str, str]], registry: Any) -> list[Need]:
    types = list(types)
    return [(t, "s") for t in types] + _include_needs(types[0] if len(types) == 1 else None, params, registry)


def _op_needs(name: str, level: str, res_type: str | None) -> list[Need]:
    from hie.interactions import operations as ops

    try:
        op = ops.find(name, level, res_type)
    except Exception:  # noqa: BLE001 - unknown operation: the route answers 404
        return []
    letters = getattr(op, "scope", None) or ("cu" if op.write else "r")
    return [(res_type or "*", ch) for ch in letters]


def needs_for(method: str, path: str, query: str, registry: Any = None) -> list[Need] | None:
    """What a request to ``path`` (below ``/fhir``) needs; None for public endpoints."""
    segs = [s for s in path.strip("/").split("/") if s]
    params = parse_qsl(query, keep_blank_values=True)
    n = len(segs)
    if n == 1 and segs[0] == "metadata" and method == "GET":
        return None
    if n == 0:
        if method == "GET":
            return _search(_types_param(params), params, registry)
        return []  # Bundle: checked entry by entry (needs_for_bundle)
    head = segs[0]
    if head.startswith("$"):
        return _op_needs(head[1:], "system", None)
    if head == "_history":
        return [(t, "s") for t in _types_param(params)]
    if head == "_search":
        return _search(_types_param(params), params, registry)
    t = head
    if n == 1:
        if method == "GET":
            return _search([t], params, registry)
        if method == "POST":
            return [(t, "c")]
        if method in ("PUT", "PATCH"):
            return [(t, "u"), (t, "s")]
        if method == "DELETE":
            return [(t, "d"), (t, "s")]
        return []
    second = segs[1]
    if n == 2:
        if second == "_history":
            return [(t, "s")]
        if second == "_search":
            return _search([t], params, registry)
        if second.startswith("$"):
            return _op_needs(second[1:], "type", t)
        return {"GET": [(t, "r")], "HEAD": [(t, "r")], "PUT": [(t, "u")], "PATCH": [(t, "u")],
                "DELETE": [(t, "d")]}.get(method, [])
    third = segs[2]
    if third == "_history":
        return [(t, "r")]
    if third.startswith("$"):
        return _op_needs(third[1:], "instance", t)
    if n == 3 and method == "GET":  # compartment search
        return _search([third if third != "*" else "*"], params, registry)
    return []


def needs_for_bundle(bundle: Any, registry: Any = None) -> list[Need]:
    needs: list[Need] = []
    for entry in (bundle.get("entry") or []) if isinstance(bundle, dict) else []:
        req = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("url"), str):
            continue  # malformed: the bundle processor reports it
        url = req["url"]
        idx = url.find("/fhir/")
        if url.startswith(("http://", "https://")) and idx >= 0:
            url = url[idx + 6:]
        path, _, query = url.partition("?")
        method = str(req.get("method", "GET")).upper()
        if method == "POST" and "/" not in path.strip("/"):
            needs.append((path.strip("/"), "c"))
            continue
        needs.extend(needs_for(method, path, query, registry) or [])
    return needs


def check(principal: Principal, needs: list[Need]) -> None:
    """Raise 405 for AuditEvent writes, 403 for a permission the token lacks."""
    for res_type, letter in needs:
        if res_type in READ_ONLY_TYPES and letter in "cud":
            raise MethodNotAllowed(f"{res_type} resources are written by the node only; "
                                   "they cannot be created, changed or deleted through the API")
    if principal.is_system and principal.token_id is None:
        return  # in-process system principal (ingest, maintenance): no token, no scopes
    contexts = contexts_of(principal)
    missing = [f"{t}.{ch}" for t, ch in needs if not permits(principal.scopes, contexts, t, ch)]
    if missing:
        raise Forbidden(
            "The access token's scopes do not allow this request; it needs "
            + ", ".join(f"{'/'.join(contexts) or '?'}/{m}" for m in dict.fromkeys(missing)),
        )
