"""Search-index tables: one table per kind of index value.

Implements the storage side of FHIR R4 search (https://hl7.org/fhir/R4/search.html):
every search parameter value extracted at write time from a resource becomes one row in
the table of its parameter type (string, token, reference, date, number, quantity, uri,
composite). The tables hang off ``resource.pk`` (:mod:`hie.storage.tables`) and are
defined on the same ``metadata`` so that one migration creates everything.

Common columns of every index table:

* ``resource_pk`` -- the owning ``resource.pk``;
* ``res_type`` / ``param`` -- resource type and search parameter code;
* ``patient_key`` -- the regional patient key of the owning resource (every clinical
  table carries it so data can later be distributed by patient).

Value columns are chosen so that both SQLite and PostgreSQL compare exactly:

* dates are closed integer ranges ``[low, high]`` of epoch microseconds (UTC);
* strings are stored twice: ``value_norm`` (NFKC, accent- and case-folded, kana-folded:
  see :func:`hie.search.normalize.norm_string`) for the default and ``:contains``
  searches, ``value_exact`` for ``:exact``;
* numbers are doubles; quantities keep the unit as sent plus a canonical UCUM form.

Derived rows: a Reference's ``identifier`` is indexed in ``search_token`` under the
parameter name ``<code>:identifier``; an Identifier's ``type`` is indexed in
``search_token`` under ``<code>:of-type`` with ``code = type.code + '|' + value``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table, Text

from hie.storage.tables import metadata

_PARAM = 100


def _common() -> list[Column]:
    return [
        Column("resource_pk", BigInteger, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(_PARAM), nullable=False),
        Column("patient_key", String(64), nullable=True),
    ]


search_string = Table(
    "search_string",
    metadata,
    *_common(),
    Column("value_norm", String(512), nullable=False),
    Column("value_exact", Text, nullable=False),
    Index("ix_search_string_pk", "resource_pk", "param"),
    # varchar_pattern_ops: LIKE 'prefix%' uses the index whatever the database collation.
    Index(
        "ix_search_string_value", "res_type", "param", "value_norm",
        postgresql_ops={"value_norm": "varchar_pattern_ops"},
    ),
)

search_token = Table(
    "search_token",
    metadata,
    *_common(),
    Column("system", String(256), nullable=True),
    Column("code", String(256), nullable=True),
    # Normalized display text (Coding.display, CodeableConcept.text, Identifier.type.text)
    # for the :text modifier.
    Column("text_norm", String(512), nullable=True),
    Index("ix_search_token_pk", "resource_pk", "param", "code"),
    Index("ix_search_token_code", "res_type", "param", "code", "system"),
)

search_reference = Table(
    "search_reference",
    metadata,
    *_common(),
    # Relative (local) references: "Type/id".
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    # Absolute URLs, canonical URLs (without "|version") and urn:uuid/urn:oid references.
    Column("url", String(1024), nullable=True),
    Index("ix_search_reference_pk", "resource_pk", "param"),
    Index("ix_search_reference_target", "target_id", "target_type", "res_type", "param"),
    Index("ix_search_reference_url", "url"),
)

search_date = Table(
    "search_date",
    metadata,
    *_common(),
    # Closed range [low, high] in epoch microseconds, UTC.
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_search_date_pk", "resource_pk", "param", "low"),
    Index("ix_search_date_value", "res_type", "param", "low", "high"),
)

search_number = Table(
    "search_number",
    metadata,
    *_common(),
    Column("value", Float, nullable=False),
    Index("ix_search_number_pk", "resource_pk", "param"),
    Index("ix_search_number_value", "res_type", "param", "value"),
)

search_quantity = Table(
    "search_quantity",
    metadata,
    *_common(),
    Column("value", Float, nullable=False),
    Column("system", String(256), nullable=True),
    Column("code", String(128), nullable=True),
    Column("unit", String(128), nullable=True),
    # UCUM canonical form (base units) when the unit is a UCUM unit we can convert.
    Column("canon_value", Float, nullable=True),
    Column("canon_code", String(128), nullable=True),
    Index("ix_search_quantity_pk", "resource_pk", "param"),
    Index("ix_search_quantity_value", "res_type", "param", "code", "value"),
    Index("ix_search_quantity_canon", "res_type", "param", "canon_code", "canon_value"),
)

search_uri = Table(
    "search_uri",
    metadata,
    *_common(),
    Column("value", String(1024), nullable=False),
    Index("ix_search_uri_pk", "resource_pk", "param"),
    Index(
        "ix_search_uri_value", "res_type", "param", "value",
        postgresql_ops={"value": "varchar_pattern_ops"},
    ),
)


def _component(i: int) -> list[Column]:
    # One component of a composite value, encoded like its own parameter type:
    # token -> (system, code); reference -> (target type, id or url); string -> code=norm;
    # quantity/number -> (system, code, value), plus a canonical-UCUM duplicate row;
    # date -> (low, high).
    return [
        Column(f"c{i}_system", String(256), nullable=True),
        Column(f"c{i}_code", String(512), nullable=True),
        Column(f"c{i}_value", Float, nullable=True),
        Column(f"c{i}_low", BigInteger, nullable=True),
        Column(f"c{i}_high", BigInteger, nullable=True),
    ]


search_composite = Table(
    "search_composite",
    metadata,
    *_common(),
    *_component(1),
    *_component(2),
    *_component(3),
    Index("ix_search_composite_pk", "resource_pk", "param"),
    Index("ix_search_composite_value", "res_type", "param", "c1_code", "c2_code"),
)

#: Index tables by parameter type (composite has its own).
TABLES_BY_TYPE = {
    "string": search_string,
    "token": search_token,
    "reference": search_reference,
    "date": search_date,
    "number": search_number,
    "quantity": search_quantity,
    "uri": search_uri,
    "composite": search_composite,
}

ALL_INDEX_TABLES = (
    search_string,
    search_token,
    search_reference,
    search_date,
    search_number,
    search_quantity,
    search_uri,
    search_composite,
)
