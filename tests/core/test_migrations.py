"""The Alembic migrations produce exactly the schema the code declares, on both databases.

A table or column added to the metadata without a migration (or the reverse) fails here.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hie.storage.schema import metadata


def _diffs(node) -> list:
    with node.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(mc, metadata)
    out = []
    for d in diffs:
        # alembic's own bookkeeping table is not part of the metadata
        if isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version":
            continue
        out.append(d)
    return out


def test_migrated_schema_matches_the_declared_tables(node):
    assert _diffs(node) == []
