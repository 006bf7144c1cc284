"""Putting identity's ``refer`` link into the version a facility's write just created.

When a facility writes a local Patient, the identity write listener (same transaction)
may set, change or restore the record's ``refer`` link to its person. Writing that as a
second version would tell the writer what matching decided: a record that auto-linked to a
person it may not see would read ``versionId 2``, a record that matched nobody
``versionId 1`` -- an existence oracle for look-alikes of hidden patients (finding W2-5).
So the listener amends the version just written instead (:func:`amend_fresh_version`): the
write's own version carries the link, whatever matching decided.

It lives in storage because it writes resource rows (the identity listener's only such
write besides re-keying). The amended version was created moments before in the same,
uncommitted transaction; nobody has read it yet. Content of that one
version (``resource`` and ``resource_version``) and its search-index rows are rewritten;
version number, time, custodian, patient key and enforcement columns stay (a Patient's
``link`` feeds none of them).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, delete, select, update

from hie.search.indexer import write_index_many
from hie.storage.repository import Stored, same_content
from hie.storage.tables import resource as R
from hie.storage.tables import resource_version as V


def amend_fresh_version(conn: Connection, registry: Any, st: Stored, body: dict[str, Any]) -> None:
    """Replace the content of ``st`` (the current version, written in this transaction) by
    ``body``; ``st`` is updated too, so the write's response and later listeners see it.
    If ``body`` is then the previous version's content (a re-send that differed only by the
    missing link, e.g. a feed re-imported), the fresh version is taken back: a no-op write."""
    if _undo_if_unchanged(conn, registry, st, body):
        return
    content = orjson.dumps(body)
    done = conn.execute(update(R).where(R.c.pk == st.pk, R.c.version_id == st.version_id,
                                        R.c.deleted.is_(False)).values(content=content)).rowcount
    if done != 1:
        raise RuntimeError(f"Patient/{st.res_id} version {st.version_id} is no longer current")
    conn.execute(update(V).where(V.c.resource_pk == st.pk, V.c.version_id == st.version_id)
                 .values(content=content))
    pkey = conn.execute(select(R.c.patient_key).where(R.c.pk == st.pk)).scalar_one()
    write_index_many(conn, registry, [{"resource_pk": st.pk, "res_type": st.res_type, "patient_key": pkey,
                                       "resource": body}], replace=True)
    st.content = content


def _undo_if_unchanged(conn: Connection, registry: Any, st: Stored, body: dict[str, Any]) -> bool:
    if st.version_id < 2:
        return False
    prev = conn.execute(select(V.c.content, V.c.last_updated).where(
        V.c.resource_pk == st.pk, V.c.version_id == st.version_id - 1, V.c.deleted.is_(False))).first()
    if prev is None or prev.content is None or not same_content(prev.content, body):
        return False
    done = conn.execute(update(R).where(R.c.pk == st.pk, R.c.version_id == st.version_id).values(
        version_id=st.version_id - 1, last_updated=prev.last_updated, content=prev.content)).rowcount
    if done != 1:
        raise RuntimeError(f"Patient/{st.res_id} version {st.version_id} is no longer current")
    conn.execute(delete(V).where(V.c.resource_pk == st.pk, V.c.version_id == st.version_id))
    pkey = conn.execute(select(R.c.patient_key).where(R.c.pk == st.pk)).scalar_one()
    write_index_many(conn, registry, [{"resource_pk": st.pk, "res_type": st.res_type, "patient_key": pkey,
                                       "resource": orjson.loads(prev.content)}], replace=True)
    st.version_id, st.last_updated, st.content = st.version_id - 1, prev.last_updated, prev.content
    return True
