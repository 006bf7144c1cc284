"""The choke-point checker: which modules may touch resource data or a raw connection.

The repository (:mod:`hie.storage.repository`) is the only code that runs SQL on the
``resource``, ``resource_version`` and ``search_*`` tables; everything else asks it for
named reads and writes, with a principal and its access policy. This module walks the
AST of every module of a source tree and reports, per module:

* ``tables``: imports the resource, version or index tables (``hie.storage.tables``
  ``resource``/``resource_version``, anything of ``hie.search.tables``), names them to
  ``table()``/``Table()``/``metadata.tables[...]``, or carries SQL text naming them;
* ``execute``: calls ``.execute(`` / ``.exec_driver_sql(`` (a statement on a connection);
* ``conn``: reaches a raw connection through an attribute (``ctx.conn``, ``repo.conn``).

:data:`RESOURCE_SQL` modules may do all three (the storage layer, the search internals,
the identity re-keying store, migrations). :data:`OWN_TABLES` modules may execute
statements on a connection for tables that are not resource data (auth, audit, identity,
consent grants, settings) but never import the resource tables. :data:`PENDING` lists known
violations still to be moved behind the repository, each with what remains; an entry that
no longer violates is reported too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Table

ROOTS = ("hie", "adapters", "consent")

#: Modules (or package prefixes ending in "/") that may run SQL on resource data.
RESOURCE_SQL: dict[str, str] = {
    "hie/storage/": "the repository, its tables, schema, engine and migrations runner",
    "hie/migrations/": "Alembic revisions create and change the tables",
    "hie/search/query.py": "search internals: the statements Repository.search runs",
    "hie/search/indexer.py": "search internals: index rows written by Repository.write_batch; reindex",
    "hie/search/tables.py": "defines the index tables",
    "hie/search/stored.py": "search internals: the registry reload reads stored SearchParameters",
    "hie/identity/rekey.py": "re-keys resource, version and index rows on link/unlink/merge",
    "hie/identity/store.py": "identity tables and the blocking index (docs/identity.md)",
}

#: Modules that may execute statements on a connection for their own, non-resource tables.
OWN_TABLES: dict[str, str] = {
    "hie/auth/": "clients, users, tokens, jti and login-attempt tables (hie/auth/tables.py)",
    "hie/audit/recorder.py": "audit journal flush: chain rows in the flusher's transaction",
    "hie/audit/chain.py": "audit_chain and audit_checkpoint tables",
    "hie/enforcement/grants.py": "consent_grant rows compiled from Consent writes",
    "hie/enforcement/policy.py": "node_setting (disaster mode) and break_glass reads for the predicate",
    "hie/enforcement/declarations.py": "break_glass declarations and the disaster switch",
    "hie/enforcement/facilities.py": "node_setting: the facility directory snapshot",
    "hie/identity/": "identity tables: persons, links, review items, events",
    "hie/app.py": "hands a transaction's connection to the repository and the registry refresh",
    "hie/ingest.py": "ingest_failure (the dead-letter store)",
    "adapters/mllp/receipts.py": "mllp_message: duplicate detection of HL7 v2 messages",
    "hie/web/store.py": "viewer_session: the viewer's server-side sessions (sealed state)",
}

#: Known violations to be moved behind the repository: module -> what remains to do.
PENDING: dict[str, str] = {}

_TABLE_NAMES = r"(resource|resource_version|search_[a-z_]+)"
_SQL_TEXT = re.compile(rf"(?i)\b(from|join|into|update|table)\s+\"?{_TABLE_NAMES}\b")
_RESOURCE_NAMES = {"resource", "resource_version", "*"}


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the tree, with "/"
    line: int
    kind: str  # tables | execute | conn
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text}"


def _allowed(path: str, table: dict[str, str]) -> bool:
    return any(path == k or (k.endswith("/") and path.startswith(k)) for k in table)


def _reexported_table(module: str, name: str) -> bool:
    """Whether ``from module import name`` yields a resource, version or index table under
    another module's name (``from hie.storage.repository import R``)."""
    if not module.startswith("hie."):
        return False
    try:
        value = getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - a module only the checked tree has
        return False
    return isinstance(value, Table) and re.fullmatch(_TABLE_NAMES, value.name) is not None


def _table_import(node: ast.AST) -> str | None:
    if isinstance(node, ast.ImportFrom) and node.module:
        names = {a.name for a in node.names}
        tables = sorted(n for n in names if _reexported_table(node.module, n))
        if tables and node.module not in ("hie.storage.tables", "hie.search.tables"):
            return f"from {node.module} import {', '.join(tables)}"
        if node.module == "hie.search.tables":
            return f"from hie.search.tables import {', '.join(sorted(names))}"
        if node.module == "hie.storage.tables" and names & _RESOURCE_NAMES:
            return f"from hie.storage.tables import {', '.join(sorted(names & _RESOURCE_NAMES))}"
        if node.module in ("hie.search", "hie.storage") and "tables" in names:
            return f"from {node.module} import tables"
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name in ("hie.search.tables", "hie.storage.tables"):
                return f"import {a.name}"
    return None


def check_source(path: str, source: str) -> list[Finding]:
    """Every choke-point finding of one module's source (``path`` relative, with "/")."""
    tree = ast.parse(source, filename=path)
    found: list[Finding] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        imported = _table_import(node)
        if imported:
            found.append(Finding(path, line, "tables", imported))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_TEXT.search(node.value):
            found.append(Finding(path, line, "tables", f"SQL text {node.value[:60]!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "execute", "exec_driver_sql"):
            found.append(Finding(path, line, "execute", f"{ast.unparse(node.func)}(...)"))
        elif isinstance(node, ast.Attribute) and node.attr == "conn":
            found.append(Finding(path, line, "conn", ast.unparse(node)))
        elif _named_table(node):
            found.append(Finding(path, line, "tables", ast.unparse(node)))
    return found


def _named_table(node: ast.AST) -> bool:
    """``table("resource", ...)``/``Table("search_token", ...)`` or ``metadata.tables["resource"]``."""
    arg: ast.AST | None = None
    if isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Name) and node.func.id in ("table", "Table"))
            or (isinstance(node.func, ast.Attribute) and node.func.attr in ("table", "Table"))):
        arg = node.args[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "tables":
        arg = node.slice
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return False
    return re.fullmatch(_TABLE_NAMES, arg.value) is not None


def iter_modules(root: Path, packages: Iterable[str] = ROOTS) -> Iterable[tuple[str, Path]]:
    for pkg in packages:
        for file in sorted((root / pkg).rglob("*.py")):
            yield file.relative_to(root).as_posix(), file


def violations(root: Path, *, pending: dict[str, str] | None = None) -> list[Finding]:
    """Findings in modules of ``root`` that their allow-list does not cover."""
    pending = PENDING if pending is None else pending
    out: list[Finding] = []
    for rel, file in iter_modules(root):
        if _allowed(rel, RESOURCE_SQL) or _allowed(rel, pending):
            continue
        for f in check_source(rel, file.read_text(encoding="utf-8")):
            if f.kind != "tables" and _allowed(rel, OWN_TABLES):
                continue
            out.append(f)
    return out


def stale_pending(root: Path, pending: dict[str, str] | None = None) -> list[str]:
    """PENDING entries whose module no longer violates (remove them from the list)."""
    pending = PENDING if pending is None else pending
    stale = []
    for key in pending:
        hits = [f for rel, file in iter_modules(root) if rel == key or (key.endswith("/") and rel.startswith(key))
                for f in check_source(rel, file.read_text(encoding="utf-8"))
                if f.kind == "tables" or not _allowed(rel, OWN_TABLES)]
        if not hits:
            stale.append(key)
    return stale
