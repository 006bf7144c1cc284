"""All tables of the node on one ``MetaData``: importing this module registers them.

Alembic's environment imports it, so every package that defines tables is listed here.
"""

from hie.search import tables as _search_tables  # noqa: F401  (registers index tables)
from hie.identity import tables as _identity_tables  # noqa: F401  (registers identity tables)
from hie.auth import tables as _auth_tables  # noqa: F401  (clients, users, tokens)
from hie.audit import tables as _audit_tables  # noqa: F401  (hash chain, checkpoints)
from hie.enforcement import tables as _enforcement_tables  # noqa: F401  (consent grants, break-glass)
from hie.web import tables as _web_tables  # noqa: F401  (viewer sessions)
from hie.storage.tables import metadata

__all__ = ["metadata"]
