"""FHIR document Bundles (IPS ``Patient/$summary`` output, 診療情報提供書, 退院時サマリー, documents
other systems sent) as a viewer page: the Composition's title, subject, author and date, then
each section (nested ones included) with its narrative and its entries resolved inside the
Bundle, each line naming its source (the entry's custodian tag or ``meta.source``).

Documents come from outside, so :func:`render` never trusts them: what is not a document
(``Bundle.type`` other than ``document``, no Composition first, malformed elements such as a
``coding`` that is not a list of objects) is a :class:`DocumentError` with a message naming
the element, never a crash; a reference that does not resolve inside the Bundle is shown as
such; narratives pass through :func:`sanitize` (a whitelist of text and table elements, no
attributes but ``colspan``/``rowspan``; scripts, styles, links, images and handlers dropped).

Spec: https://hl7.org/fhir/R4/documents.html ; https://hl7.org/fhir/uv/ips/ ;
https://hl7.org/fhir/R4/narrative.html#security
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Any

from hie.summary import clinical
from hie.web.wareki import format_both

ALLOWED = {"div", "p", "br", "span", "b", "i", "em", "strong", "u", "sub", "sup", "small", "ul", "ol", "li",
           "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "h1", "h2", "h3", "h4", "h5", "h6",
           "pre", "code", "blockquote", "dl", "dt", "dd", "hr"}
VOID = {"br", "hr"}
DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript"}
CELL_ATTRS = {"colspan", "rowspan"}
MAX_DEPTH = 8


class DocumentError(ValueError):
    """The Bundle cannot be shown as a document; ``str()`` says why (the element)."""


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_CONTENT:
            self.skip += 1
            return
        if self.skip or tag not in ALLOWED:
            return
        kept = "".join(f' {k}="{escape(v or "", quote=True)}"' for k, v in attrs
                       if k in CELL_ATTRS and (v or "").isascii() and (v or "").isdigit())
        self.out.append(f"<{tag}{kept}>")
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_CONTENT:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip or tag not in ALLOWED or tag in VOID or tag not in self.open:
            return
        while self.open:
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(escape(data, quote=False))


def sanitize(xhtml: str) -> str:
    """Narrative XHTML reduced to safe text and table markup."""
    p = _Sanitizer()
    p.feed(xhtml)
    p.close()
    return "".join(p.out) + "".join(f"</{t}>" for t in reversed(p.open))


@dataclass
class Entry:
    ref: str
    text: str
    when: str
    status: str
    value: str
    source: str
    resolved: bool = True


@dataclass
class Section:
    title: str
    code: str
    narrative: str
    empty_reason: str
    entries: list[Entry] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


@dataclass
class Document:
    title: str
    type_code: str
    date: str
    subject: dict[str, Any] | None
    author: str
    sections: list[Section]
    refs: list[str]  # every resolved entry shown ("Type/id")


def _codings(concept: Any, where: str) -> list[dict[str, Any]]:
    if concept is None:
        return []
    if not isinstance(concept, dict):
        raise DocumentError(f"{where} is not a CodeableConcept")
    codings = concept.get("coding") or []
    if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
        raise DocumentError(f"{where}.coding must be a list of Coding objects")
    return codings


def _index(entries: list[Any]) -> dict[str, dict[str, Any]]:
    """Resources by every name a reference may use: fullUrl, ``Type/id``, and the absolute
    URL's ``Type/id`` tail."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            continue
        full = e.get("fullUrl")
        if isinstance(full, str):
            out[full] = res
            tail = "/".join(full.rstrip("/").split("/")[-2:])
            out.setdefault(tail, res)
        if res.get("resourceType") and res.get("id"):
            out.setdefault(f"{res['resourceType']}/{res['id']}", res)
    return out


def _source(res: dict[str, Any]) -> str:
    raw = res.get("meta")
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for tag in meta.get("tag") or ():
        if isinstance(tag, dict) and str(tag.get("system", "")).endswith("/CodeSystem/custodian"):
            return str(tag.get("display") or tag.get("code") or "")
    return str(meta.get("source") or "")


def _entry(ref: Any, index: dict[str, dict[str, Any]], lang: str) -> Entry:
    target = ref.get("reference") if isinstance(ref, dict) else None
    res = index.get(target) if isinstance(target, str) else None
    if res is None:
        shown = target if isinstance(target, str) else str((ref or {}).get("display") or "")
        return Entry(shown, str((ref or {}).get("display") or "") if isinstance(ref, dict) else "", "", "", "", "",
                     resolved=False)
    try:
        text = clinical.display_of(res)
        value = clinical.value_of(res)
        status = clinical.status_code(res)
        when = clinical.date_of(res)
    except (AttributeError, TypeError) as exc:  # malformed element inside an entry
        raise DocumentError(f"{res.get('resourceType')}/{res.get('id')}: malformed element ({exc})") from exc
    return Entry(f"{res.get('resourceType')}/{res.get('id')}", text, format_both(when[:10], lang) if when else "",
                 status, value, _source(res))


def _section(raw: Any, index: dict[str, dict[str, Any]], lang: str, where: str, depth: int) -> Section:
    if not isinstance(raw, dict):
        raise DocumentError(f"{where} is not an object")
    if depth > MAX_DEPTH:
        raise DocumentError(f"{where}: sections nested deeper than {MAX_DEPTH}")
    codings = _codings(raw.get("code"), f"{where}.code")
    code = next((str(c.get("code")) for c in codings if c.get("code")), "")
    text: dict[str, Any] = raw["text"] if isinstance(raw.get("text"), dict) else {}
    div = str(text["div"]) if isinstance(text.get("div"), str) else ""
    empty = clinical.concept_text(raw.get("emptyReason")) if isinstance(raw.get("emptyReason"), dict) else ""
    entries = raw.get("entry") or []
    if not isinstance(entries, list):
        raise DocumentError(f"{where}.entry must be a list")
    subs = raw.get("section") or []
    if not isinstance(subs, list):
        raise DocumentError(f"{where}.section must be a list")
    return Section(str(raw.get("title") or code), code, sanitize(div), empty,
                   [_entry(e, index, lang) for e in entries],
                   [_section(s, index, lang, f"{where}.section[{i}]", depth + 1) for i, s in enumerate(subs)])


def _all_refs(sections: list[Section]) -> list[str]:
    out: list[str] = []
    for s in sections:
        out += [e.ref for e in s.entries if e.resolved]
        out += _all_refs(s.sections)
    return out


def render(bundle: Any, lang: str = "ja") -> Document:
    """The document view of ``bundle``; :class:`DocumentError` when it is not a document."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DocumentError("not a Bundle")
    if bundle.get("type") != "document":
        raise DocumentError(f"Bundle.type is {bundle.get('type')!r}, not 'document'")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise DocumentError("Bundle.entry is empty: a document starts with its Composition")
    comp = entries[0].get("resource")
    if not isinstance(comp, dict) or comp.get("resourceType") != "Composition":
        raise DocumentError("Bundle.entry[0] is not a Composition")
    index = _index(entries)
    type_codings = _codings(comp.get("type"), "Composition.type")
    raw_sections = comp.get("section") or []
    if not isinstance(raw_sections, list):
        raise DocumentError("Composition.section must be a list")
    sections = [_section(s, index, lang, f"Composition.section[{i}]", 1) for i, s in enumerate(raw_sections)]
    subject_ref = (comp.get("subject") or {}).get("reference") if isinstance(comp.get("subject"), dict) else None
    subject = index.get(subject_ref) if isinstance(subject_ref, str) else None
    date = comp.get("date") if isinstance(comp.get("date"), str) else ""
    type_code = next((str(c.get("code")) for c in type_codings if c.get("code")), "")
    return Document(str(comp.get("title") or ""), type_code, format_both(date[:10], lang) if date else "", subject,
                    _authors(comp, index), sections, _all_refs(sections))


def _human(n: dict[str, Any]) -> str:
    raw = n.get("given")
    given: list[Any] = raw if isinstance(raw, list) else []
    return " ".join(str(x) for x in [*given, n.get("family") or ""]).strip()


def _authors(comp: dict[str, Any], index: dict[str, dict[str, Any]]) -> str:
    names = []
    for a in comp.get("author") or ():
        if not isinstance(a, dict):
            continue
        res = index.get(str(a.get("reference"))) or {}
        name = res.get("name")
        if isinstance(name, list):  # Practitioner.name: HumanName list
            name = next((n.get("text") or _human(n) for n in name if isinstance(n, dict)), None)
        text = name if isinstance(name, str) else a.get("display")
        if isinstance(text, str) and text:
            names.append(text)
    return ", ".join(names)
