"""The facility directory: the one place that turns a facility code into a registered facility.

A facility is an ``Organization`` of the registry (:mod:`hie.auth.registry`) with a 10-digit
medical-institution code (``identifier`` in ``MEDICAL_INSTITUTION_SYSTEM``). Its network role
is the ``NETWORK_ROLE_EXT`` extension: ``disclosing`` (shares its records, sees no other
facility's), ``viewing`` (sees what consents allow, discloses nothing) or ``both``. An
Organization without the extension has the role ``both``, so registries written before roles
were enforced keep working; an unknown role code is refused on write. An Organization that is
``active: false``, deleted, or has no institution code is no facility: :func:`lookup` answers
``None`` for its code, exactly as for a code nobody registered.

How it stays cheap: a write listener (:func:`on_write`, installed by the node) keeps a compact
snapshot of every Organization in ``node_setting`` (row :data:`DIRECTORY_SETTING`, JSON) and
sets a fresh random version (row :data:`VERSION_SETTING`) in the same transaction as the
Organization write. :func:`lookup` reads the version (one primary-key row) and uses the
process's parsed copy while the version is unchanged. A transaction sees its own uncommitted
registry writes (consent compilation in the same Bundle as the Organizations), and a
rolled-back version never comes back because versions are random.

The access predicate needs no lookup at all: the same listener keeps one ``node_setting``
row per active facility code (name :func:`role_setting`, value its network role), and the
predicate tests the principal's row inside the statement it guards (an uncommitted
registry write is seen by its own transaction; another process's committed one by the very
next statement). So no process caches a role, and a read by id stays one round trip
(docs/adr/0007-request-round-trips.md). Updates of the snapshot
lock its row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite writers are serialized),
so two concurrent registry writers cannot lose each other's change. The snapshot is built
only from what the listener is handed, never by reading resource tables.

Two active Organizations may not carry the same institution code (a second one is refused
with its element path): one code is one facility.

Spec: https://jpfhir.jp/fhir/core/ (JP_Organization); https://hl7.org/fhir/R4/organization.html
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from hie.auth.registry import FACILITY_KIND_SYSTEM, NETWORK_ROLE_EXT, NETWORK_ROLES
from hie.enforcement.tables import node_setting as S
from hie.errors import InvalidResource
from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM

DIRECTORY_SETTING = "facility_directory"
VERSION_SETTING = "facility_directory_version"
ROLE_PREFIX = "facility_role:"  # + institution code: the row the access predicate reads
DEFAULT_NETWORK_ROLE = "both"
DISCLOSING_ROLES = frozenset({"disclosing", "both"})
VIEWING_ROLES = frozenset({"viewing", "both"})


@dataclass(frozen=True)
class Facility:
    code: str
    org_id: str
    name: str
    active: bool
    network_role: str
    kind: str | None

    @property
    def may_disclose(self) -> bool:
        """Its records may be shared with other facilities (and it sees its own)."""
        return self.active and self.network_role in DISCLOSING_ROLES

    @property
    def may_view(self) -> bool:
        """It may see other facilities' records that a consent grants it."""
        return self.active and self.network_role in VIEWING_ROLES

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "active": self.active,
                "role": self.network_role, "kind": self.kind}


class Directory:
    """A parsed snapshot: every Organization with an institution code, by id and by code."""

    def __init__(self, orgs: dict[str, Facility]) -> None:
        self.orgs = orgs
        self.by_code = {f.code: f for f in sorted(orgs.values(), key=lambda f: f.org_id) if f.active}

    @classmethod
    def from_json(cls, text: str | None) -> Directory:
        raw = orjson.loads(text) if text else {}
        return cls({oid: Facility(code=v["code"], org_id=oid, name=v.get("name") or "", active=bool(v["active"]),
                                  network_role=v["role"], kind=v.get("kind")) for oid, v in raw.items()})

    def to_json(self) -> str:
        return orjson.dumps({oid: f.as_json() for oid, f in sorted(self.orgs.items())}).decode()


# -- reading -------------------------------------------------------------------------

_LOCK = threading.Lock()
_CACHE: dict[str, tuple[str, Directory]] = {}  # database URL -> (version, directory)


def _setting(conn: Connection, name: str, *, for_update: bool = False) -> str | None:
    stmt = select(S.c.value).where(S.c.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return conn.execute(stmt).scalar_one_or_none()


def directory(conn: Connection) -> Directory:
    """The registry as this transaction sees it (cached per process and database)."""
    version = _setting(conn, VERSION_SETTING)
    if version is None:
        return Directory({})  # nothing registered through the listener yet
    url = conn.engine.url.render_as_string(hide_password=True)
    hit = _CACHE.get(url)
    if hit is not None and hit[0] == version:
        return hit[1]
    parsed = Directory.from_json(_setting(conn, DIRECTORY_SETTING))
    with _LOCK:
        _CACHE[url] = (version, parsed)
    return parsed


def lookup(conn: Connection, code: str | None) -> Facility | None:
    """The registered, active facility with institution ``code``, else None."""
    if not code:
        return None
    return directory(conn).by_code.get(code)


def for_repository(repo: Any, code: str | None) -> Facility | None:
    """:func:`lookup` in the transaction of ``repo`` (for interactions and operations, which
    hold a repository, never a raw connection)."""
    return lookup(repo.conn, code)


def organization(conn: Connection, org_id: str) -> Facility | None:
    """The facility ``Organization/<org_id>`` describes, active or not (None: no such
    Organization, or it carries no institution code)."""
    return directory(conn).orgs.get(org_id)


# -- keeping the snapshot ----------------------------------------------------------------


def facility_of(org_id: str, resource: dict[str, Any]) -> Facility | None:
    """The facility ``Organization/<org_id>`` describes (None without an institution code).

    Raises :class:`InvalidResource` for an unknown network-role code."""
    code = next((str(i["value"]) for i in resource.get("identifier") or ()
                 if isinstance(i, dict) and i.get("system") == MEDICAL_INSTITUTION_SYSTEM and i.get("value")), None)
    role = DEFAULT_NETWORK_ROLE
    for n, ext in enumerate(resource.get("extension") or ()):
        if isinstance(ext, dict) and ext.get("url") == NETWORK_ROLE_EXT:
            role = str(ext.get("valueCode"))
            if role not in NETWORK_ROLES:
                path = f"Organization.extension[{n}].valueCode"
                raise InvalidResource(f"{path}: network role must be one of {', '.join(NETWORK_ROLES)}",
                                      expression=[path])
    if code is None:
        return None
    kind = next((str(c["code"]) for t in resource.get("type") or () if isinstance(t, dict)
                 for c in t.get("coding") or () if isinstance(c, dict) and c.get("system") == FACILITY_KIND_SYSTEM
                 and c.get("code")), None)
    return Facility(code=code, org_id=org_id, name=str(resource.get("name") or ""),
                    active=resource.get("active") is not False, network_role=str(role), kind=kind)


def _refuse_duplicate_codes(orgs: dict[str, Facility], changed: dict[str, Facility]) -> None:
    for f in changed.values():
        if not f.active:
            continue
        other = next((o for o in orgs.values() if o.active and o.code == f.code and o.org_id != f.org_id), None)
        if other is not None:
            raise InvalidResource(
                f"Organization.identifier: institution code {f.code} is already registered as "
                f"Organization/{other.org_id}", expression=["Organization.identifier"])


def _follow_code_changes(conn: Connection, before: dict[str, Facility], after: dict[str, Facility],
                         org_ids: list[str]) -> None:
    """Consent grants name a facility by its code: when an Organization's code changes they
    follow it; when it loses its code (or is deleted) its permits go, its exclusions stay."""
    from hie.enforcement.grants import follow_registry  # grants imports this module

    held = {f.code for f in after.values()}
    renamed: dict[str, str] = {}
    removed: set[str] = set()
    for oid in org_ids:
        old, new = before.get(oid), after.get(oid)
        if old is None or old.code in held:
            continue
        if new is not None:
            renamed[old.code] = new.code
        else:
            removed.add(old.code)
    if renamed or removed:
        follow_registry(conn, renamed, removed)


def on_write(repo: Any, results: list[Any]) -> None:
    """Write listener: apply Organization writes to the snapshot and give it a new version."""
    from hie.enforcement.policy import put_setting  # policy imports this module

    touched = [r.stored for r in results if r.stored is not None and r.stored.res_type == "Organization"]
    if not touched:
        return
    conn = repo.conn
    _setting(conn, VERSION_SETTING, for_update=True)  # serializes concurrent registry writers
    before = Directory.from_json(_setting(conn, DIRECTORY_SETTING, for_update=True)).orgs
    orgs = dict(before)
    changed: dict[str, Facility] = {}
    for st in touched:
        orgs.pop(st.res_id, None)
        if st.deleted or st.content is None:
            continue
        f = facility_of(st.res_id, st.resource())
        if f is not None:
            orgs[st.res_id] = changed[st.res_id] = f
    _refuse_duplicate_codes(orgs, changed)
    _follow_code_changes(conn, before, orgs, [st.res_id for st in touched])
    now = repo.clock.now_us()
    by = repo.principal.name
    after = Directory(orgs)
    put_setting(conn, DIRECTORY_SETTING, after.to_json(), by=by, now=now)
    put_setting(conn, VERSION_SETTING, uuid.uuid4().hex, by=by, now=now)
    sync_roles(conn, after, by=by, now=now)


def role_setting(code: str) -> str:
    """The ``node_setting`` name holding the network role of active facility ``code``."""
    return ROLE_PREFIX + code


def sync_roles(conn: Connection, directory: Directory, *, by: str, now: int) -> None:
    """Make the per-code role rows say what ``directory`` says (only the differences are
    written; also heals a database whose rows predate them, see ``Node.upgrade``)."""
    from sqlalchemy import delete

    from hie.enforcement.policy import put_setting  # policy imports this module

    stored = {str(n): str(v) for n, v in conn.execute(
        select(S.c.name, S.c.value).where(S.c.name.like(ROLE_PREFIX + "%")))}
    wanted = {role_setting(code): f.network_role for code, f in directory.by_code.items()}
    gone = sorted(stored.keys() - wanted.keys())
    if gone:
        conn.execute(delete(S).where(S.c.name.in_(gone)))
    for name, role in sorted(wanted.items()):
        if stored.get(name) != role:
            put_setting(conn, name, role, by=by, now=now)


def install(node: Any) -> None:
    """Keep the directory in step with Organization writes (before consent compilation,
    which resolves actors against it)."""
    node.write_listeners.insert(0, on_write)
