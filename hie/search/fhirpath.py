"""Evaluation of search-parameter FHIRPath expressions: compiled extractors and fhirpathpy.

Implements the extraction step of FHIR R4 search (https://hl7.org/fhir/R4/search.html,
"SearchParameter.expression", https://hl7.org/fhir/R4/fhirpath.html).

Most R4 expressions are plain paths, optionally narrowed by ``as T`` / ``.as(T)`` /
``.ofType(T)`` on a choice element, ``.where(resolve() is T)`` on references or
``.where(field='literal')``. Those are compiled into direct Python functions over the
resource dict (about 50x faster than interpreting); everything else is evaluated by
fhirpathpy with the R4 model. ``tests/search/test_extractors.py`` proves the two equal on
the corpus.

Two deliberate choices, applied identically by both evaluators:

* ``resolve()`` does not load the target: it yields a stub of the type named by the
  reference (``Patient/1`` -> a Patient), which is all ``resolve() is T`` needs;
* R4 writes ``(Observation.component.value as Quantity)``; FHIRPath's ``as`` raises on a
  collection of more than one item. Where fhirpathpy raises on such an ``as``, the
  expression is re-evaluated with ``as T`` read as ``ofType(T)`` (what R5 writes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

R4_MODEL = models["r4"]
_PATH2TYPE: dict[str, str] = R4_MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = R4_MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = R4_MODEL["pathsDefinedElsewhere"]

Extractor = Callable[[dict[str, Any]], list[Any]]

_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference (or reference string) points to, if it says."""
    if isinstance(ref, dict):
        s = ref.get("reference")
        if not isinstance(s, str):
            t = ref.get("type")
            return t if isinstance(t, str) else None
    elif isinstance(ref, str):
        s = ref
    else:
        return None
    m = _REF_TYPE.search(s)
    return m.group(1) if m else None


def _resolve(coll: list[Any]) -> list[Any]:
    out = []
    for item in coll:
        t = reference_type(item)
        if t:
            out.append(ResourceNode.create_node({"resourceType": t}, t))
    return out


_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}}
_AS_OP = re.compile(r"\s+as\s+([A-Za-z]+)")


def _plain(v: Any) -> Any:
    # fhirpathpy may hand back its own node/number types; the index wants JSON values.
    if isinstance(v, ResourceNode):
        return v.data
    return v


def fhirpathpy_extractor(expression: str) -> Extractor:
    """An extractor interpreting ``expression`` with fhirpathpy (R4 model)."""
    fn = fp_compile(expression, R4_MODEL, _OPTIONS)
    fallback: Callable[..., list[Any]] | None = None
    if _AS_OP.search(expression) or ".as(" in expression:
        rewritten = _AS_OP.sub(r".ofType(\1)", expression).replace(".as(", ".ofType(")
        fallback = fp_compile(rewritten, R4_MODEL, _OPTIONS)

    def run(resource: dict[str, Any]) -> list[Any]:
        try:
            return [_plain(v) for v in fn(resource, {})]
        except Exception:
            if fallback is None:
                raise
            return [_plain(v) for v in fallback(resource, {})]

    return run


# -- the compiler for simple paths ----------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>[().=]))"
)


class _Unsupported(Exception):
    pass


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise _Unsupported(expr)
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _parse(expr: str) -> tuple[str, list[tuple]]:
    """``(root type, steps)``; steps: ('field', n) | ('as', T) | ('resolve', T) | ('eq', f, v)."""
    toks = _tokens(expr)
    # Strip balanced outer parentheses, remembering a trailing "as T" inside them:
    # "(X.y as T)" and "(X.y as T).z".
    steps: list[tuple] = []
    i = 0

    def expect(kind: str, val: str | None = None) -> str:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (val is not None and toks[i][1] != val):
            raise _Unsupported(expr)
        i += 1
        return toks[i - 1][1]

    def path() -> str:
        nonlocal i
        root = expect("ident")
        while i < len(toks) and toks[i] == ("op", "."):
            i += 1
            name = expect("ident")
            if i < len(toks) and toks[i] == ("op", "("):
                i += 1
                if name in ("as", "ofType"):
                    steps.append(("as", expect("ident")))
                    expect("op", ")")
                elif name == "where":
                    if toks[i] == ("ident", "resolve"):
                        i += 1
                        expect("op", "(")
                        expect("op", ")")
                        expect("ident", "is")
                        steps.append(("resolve", expect("ident")))
                    else:
                        f = expect("ident")
                        expect("op", "=")
                        v = expect("str")
                        steps.append(("eq", f, v[1:-1]))
                    expect("op", ")")
                else:
                    raise _Unsupported(expr)
            else:
                steps.append(("field", name))
        return root

    if toks and toks[0] == ("op", "("):
        i = 1
        root = path()
        if i < len(toks) and toks[i] == ("ident", "as"):
            i += 1
            steps.append(("as", expect("ident")))
        expect("op", ")")
        if i < len(toks):
            # "(X as T).field..."
            while i < len(toks) and toks[i] == ("op", "."):
                i += 1
                steps.append(("field", expect("ident")))
    else:
        root = path()
        if i < len(toks) and toks[i] == ("ident", "as"):
            i += 1
            steps.append(("as", expect("ident")))
    if i != len(toks):
        raise _Unsupported(expr)
    if not root[0].isupper():
        raise _Unsupported(expr)
    return root, steps


_BACKBONES = {k.rsplit(".", 1)[0] for k in _PATH2TYPE if k.count(".") >= 2} | set(_ELSEWHERE)


def _type_of(path: str) -> str | None:
    path = _ELSEWHERE.get(path, path)
    t = _PATH2TYPE.get(path)
    if t is None and path in _BACKBONES:
        return "BackboneElement"
    return t


_COMPLEX = {t for t in R4_MODEL["type2Parent"] if t[0].isupper()}


_PARENT_LOWER = {k.lower(): v for k, v in R4_MODEL["type2Parent"].items()}


def _is_a(t: str, wanted: str) -> bool:
    """FHIR type ``t`` is ``wanted`` or derives from it (canonical is a uri, Age a Quantity)."""
    cur: str | None = t
    while cur:
        if cur.lower() == wanted.lower():
            return True
        cur = _PARENT_LOWER.get(cur.lower())
    return False


def _cap(t: str) -> str:
    return t[0].upper() + t[1:]


def _plan(steps: list[tuple], cur: str) -> list[tuple] | None:
    """Turn parsed steps into key lookups, starting from the FHIR path ``cur``."""
    plan: list[tuple] = []
    k = 0
    while k < len(steps):
        step = steps[k]
        if step[0] != "field":
            if step[0] in ("resolve", "eq"):
                plan.append(step)
                k += 1
                continue
            return None  # "as" without a preceding choice element
        name = step[1]
        elem = f"{cur}.{name}"
        nxt = steps[k + 1] if k + 1 < len(steps) else None
        choice_of = elem if elem in _CHOICES else _ELSEWHERE.get(elem)
        if choice_of in _CHOICES:
            choices = _CHOICES[choice_of]
            if nxt and nxt[0] == "as":
                wanted = [c for c in choices if _is_a(c, nxt[1])]
                k += 1
            else:
                wanted = choices
            plan.append(("keys", [(name + _cap(c), c) for c in wanted]))
            cur = wanted[0] if len(wanted) == 1 and wanted[0] in _COMPLEX else "?"
            k += 1
            continue
        if nxt and nxt[0] == "as":
            return None  # "as" on a non-choice element: leave it to fhirpathpy
        t = _type_of(elem)
        if t is None:
            return None
        plan.append(("keys", [(name, t)]))
        if t in ("BackboneElement", "Element"):
            cur = _ELSEWHERE.get(elem, elem)
        elif t.startswith("System."):
            cur = "?"
        else:
            cur = t
        k += 1
    return plan


def _run_plan(plan: list[tuple], coll: list[Any]) -> list[Any]:
    for step in plan:
        if step[0] == "keys":
            out: list[Any] = []
            for item in coll:
                if not isinstance(item, dict):
                    continue
                for key, _t in step[1]:
                    v = item.get(key)
                    if v is None:
                        continue
                    if isinstance(v, list):
                        out.extend(x for x in v if x is not None)
                    else:
                        out.append(v)
            coll = out
        elif step[0] == "resolve":
            coll = [x for x in coll if reference_type(x) == step[1]]
        else:  # eq
            coll = [x for x in coll if isinstance(x, dict) and x.get(step[1]) == step[2]]
        if not coll:
            return []
    return coll


def compile_path(expression: str, res_type: str) -> Extractor | None:
    """A direct extractor for a simple path expression, or None if it is not simple."""
    try:
        root, steps = _parse(expression)
    except (_Unsupported, IndexError):
        return None
    if root not in (res_type, "Resource", "DomainResource"):
        return None
    plan = _plan(steps, root)
    if plan is None:
        return None
    generic = root in ("Resource", "DomainResource")

    def run(resource: dict[str, Any]) -> list[Any]:
        if not generic and resource.get("resourceType") != root:
            return []
        return _run_plan(plan, [resource])

    return run


def simple_path(expression: str) -> str | None:
    """The FHIR element path of a plain path expression ("Observation.component")."""
    try:
        root, steps = _parse(expression)
    except (_Unsupported, IndexError):
        return None
    if any(s[0] != "field" for s in steps):
        return None
    return ".".join([root] + [s[1] for s in steps])


def relative_extractor(expression: str, base_path: str | None) -> Extractor:
    """An extractor for ``expression`` evaluated on an element at ``base_path``
    (composite components)."""
    if base_path:
        try:
            root, steps = _parse("X." + expression)
            plan = _plan(steps, base_path)
        except (_Unsupported, IndexError):
            plan = None
        if plan is not None:
            return lambda element: _run_plan(plan, [element])
    fn = fp_compile(expression, R4_MODEL, _OPTIONS)

    def run(element: dict[str, Any]) -> list[Any]:
        node = ResourceNode.create_node(element, base_path) if base_path else element
        return [_plain(v) for v in fn(node, {})]

    return run


def make_extractor(expression: str, res_type: str) -> tuple[Extractor, bool]:
    """``(extractor, compiled?)`` for an expression already narrowed to ``res_type``."""
    fn = compile_path(expression, res_type)
    if fn is not None:
        return fn, True
    return fhirpathpy_extractor(expression), False


def split_union(expression: str) -> list[str]:
    """Split on top-level ``|``."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    in_str = False
    for c in expression:
        if c == "'":
            in_str = not in_str
        elif not in_str:
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == "|" and depth == 0:
                parts.append("".join(cur).strip())
                cur = []
                continue
        cur.append(c)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


_ROOT = re.compile(r"^\(*\s*([A-Za-z]+)")


def expression_for_type(expression: str, res_type: str) -> str | None:
    """The part of a multi-base expression that applies to ``res_type`` (None if none)."""
    keep = []
    for part in split_union(expression):
        m = _ROOT.match(part)
        root = m.group(1) if m else None
        if root in (res_type, "Resource", "DomainResource"):
            keep.append(part)
    return " | ".join(keep) if keep else None


def union_extractor(expression: str, res_type: str) -> tuple[Extractor, bool]:
    """An extractor for a (narrowed) union: compiled per part where possible.

    FHIRPath ``|`` removes duplicates; so does the indexer (rows are de-duplicated), so
    the union is evaluated as a concatenation."""
    parts = split_union(expression)
    fns = []
    all_compiled = True
    for p in parts:
        fn, compiled = make_extractor(p, res_type)
        all_compiled &= compiled
        fns.append(fn)
    if len(fns) == 1:
        return fns[0], all_compiled

    def run(resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for fn in fns:
            out.extend(fn(resource))
        return out

    return run, all_compiled
