"""A Patient-compartment search with one ``_type`` tests membership for those types only
(hie/search/query.py, ``match_query``); the answer must equal the per-type compartment
searches, with the Patient itself when ``_type`` names it (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from hie.demo import demo_bundle
from hie.ingest import ingest_bundle
from hie.principal import SYSTEM, Principal


def _ids(page: Any) -> set[str]:
    return {f"{t}/{i}" for _pk, t, i, _c in page.rows}


def test_type_restricted_compartment_equals_per_type_searches(node: Any) -> None:
    ingest_bundle(node, demo_bundle(), source="demo:test")
    viewer = Principal(kind="user", name="v", user_id="v", organization_id="1170000010")
    types = ["Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Patient"]
    for who in (SYSTEM, viewer):
        with node.context(who, write=False) as ctx:
            comp = ("Patient", "demo-p1")
            per_type = set().union(*(_ids(ctx.repo.search(t, [], count=1000, compartment=comp, total=False))
                                     for t in types))
            joined = _ids(ctx.repo.search(None, [("_type", ",".join(types))], count=1000, compartment=comp,
                                          total=False))
            assert joined == per_type and "Patient/demo-p1" in joined
            assert {r.split("/")[0] for r in joined} <= set(types)
            everything = _ids(ctx.repo.search(None, [], count=1000, compartment=comp, total=False))
            assert joined == {r for r in everything if r.split("/")[0] in types}
            both = _ids(ctx.repo.search(None, [("_type", "Observation,Condition"), ("_type", "Observation")],
                                        count=1000, compartment=comp, total=False))
            assert both == {r for r in joined if r.startswith("Observation/")}
    assert any(r.startswith("Observation/") for r in joined)
