"""Facility directory: build the snapshot (hie.enforcement.facilities) from the Organizations
already stored, so a database written before the directory existed keeps its facilities.

Revision ID: 0005_facility_directory
Revises: 0004_consent
Create Date: 2026-12-01
"""
import time
import uuid

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0005_facility_directory"
down_revision = "0004_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from hie.enforcement.facilities import DIRECTORY_SETTING, VERSION_SETTING, Directory, facility_of
    from hie.errors import InvalidResource

    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT res_id, content FROM resource WHERE res_type = 'Organization' AND deleted = :no"),
        {"no": False}).all()
    orgs = {}
    for res_id, content in rows:
        try:
            f = facility_of(res_id, orjson.loads(content)) if content else None
        except InvalidResource:
            f = None  # an unknown network role: no facility until the operator fixes it
        if f is not None:
            orgs[res_id] = f
    if not orgs:
        return
    now = int(time.time() * 1_000_000)
    setting = sa.table("node_setting", sa.column("name"), sa.column("value"), sa.column("changed_at"),
                       sa.column("changed_by"))
    conn.execute(setting.delete().where(setting.c.name.in_([DIRECTORY_SETTING, VERSION_SETTING])))
    conn.execute(setting.insert(), [
        {"name": DIRECTORY_SETTING, "value": Directory(orgs).to_json(), "changed_at": now, "changed_by": "migration"},
        {"name": VERSION_SETTING, "value": uuid.uuid4().hex, "changed_at": now, "changed_by": "migration"},
    ])


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM node_setting WHERE name IN ('facility_directory', 'facility_directory_version')"))
