"""SMART v2 scopes: parsing, granting (request intersected with what a client may have)
and checking one FHIR permission.

A resource scope is ``<context>/<type>.<permissions>`` with context ``patient``,
``user`` or ``system``, type a resource type or ``*``, and permissions a subsequence of
``cruds`` (create, read, update, delete, search). SMART v1 forms (``.read``,
``.write``, ``.*``) are accepted and translated (read = ``rs``, write = ``cud``). Scopes
with query parameters (``patient/Observation.rs?category=...``) are not granted: the
node cannot yet narrow a permission by search criteria, and RFC 6749 §3.3 lets a
server grant less than asked (the token response names what was granted).

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

LETTERS = "cruds"
CONTEXTS = ("patient", "user", "system")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)$")

#: Non-resource scopes the node understands.
OTHER_SCOPES = frozenset({
    "openid", "fhirUser", "profile", "offline_access", "online_access", "launch", "launch/patient",
})


@dataclass(frozen=True)
class ResourceScope:
    context: str
    res_type: str  # or "*"
    letters: str  # ordered subsequence of "cruds"

    def __str__(self) -> str:
        return f"{self.context}/{self.res_type}.{self.letters}"

    def covers(self, res_type: str) -> bool:
        return self.res_type in ("*", res_type)


def _letters(text: str) -> str | None:
    if text in _V1:
        return _V1[text]
    pos = -1
    for ch in text:
        i = LETTERS.find(ch)
        if i <= pos:  # unknown letter, repeated or out of order
            return None
        pos = i
    return text or None


def parse_one(scope: str) -> ResourceScope | None:
    if "?" in scope:
        return None
    m = _RE.match(scope)
    if not m:
        return None
    letters = _letters(m.group(3))
    return ResourceScope(m.group(1), m.group(2), letters) if letters else None


@lru_cache(maxsize=4096)
def parse(scopes: frozenset[str]) -> tuple[ResourceScope, ...]:
    return tuple(s for s in map(parse_one, sorted(scopes)) if s is not None)


def permits(scopes: frozenset[str], contexts: tuple[str, ...], res_type: str, letter: str) -> bool:
    """Whether any scope of an allowed ``context`` grants ``letter`` on ``res_type``."""
    return any(
        s.context in contexts and s.covers(res_type) and letter in s.letters for s in parse(scopes)
    )


def grant(requested: str | None, allowed: str, *, contexts: tuple[str, ...]) -> list[str]:
    """The scopes to grant: each requested scope narrowed to what ``allowed`` covers."""
    allowed_set = allowed.split()
    allowed_rs = [s for s in map(parse_one, allowed_set) if s is not None]
    out: list[str] = []
    for raw in (requested or "").split():
        if raw in OTHER_SCOPES:
            if raw in allowed_set:
                out.append(raw)
            continue
        rs = parse_one(raw)
        if rs is None or rs.context not in contexts:
            continue
        may: set[str] = set()
        for a in allowed_rs:
            if a.context == rs.context and (a.res_type == "*" or a.res_type == rs.res_type):
                may.update(a.letters)
        letters = "".join(ch for ch in LETTERS if ch in rs.letters and ch in may)
        if letters:
            out.append(str(ResourceScope(rs.context, rs.res_type, letters)))
    return list(dict.fromkeys(out))
