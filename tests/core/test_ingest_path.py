"""The ingest path (hie.ingest.ingest_bundle, hie load --workers): work done before the
write transaction gives the same stored state as the transaction alone; no-op reloads
need no write; parallel loads keep every file and report each failure once."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select

from hie.ingest import ingest_bundle, list_failures
from hie.interactions import bundle as bundle_mod
from hie.loader import load_paths
from hie.principal import SYSTEM
from hie.search.indexer import extract_rows, reindex
from hie.search.registry import SearchRegistry
from hie.search.tables import ALL_INDEX_TABLES
from hie.storage.db import write_tx
from hie.storage.repository import Write, WriteNeeded
from hie.storage.tables import resource, resource_version

BASE = "http://testserver/fhir"


def _put(res):
    return {"fullUrl": f"urn:uuid:{res['id']}", "resource": res,
            "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}}


def _tx(*entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


PATIENT = {"resourceType": "Patient", "id": "6e0f3c1a-0b55-4d7e-9b1e-111111111111",
           "identifier": [{"system": "urn:example:mrn", "value": "A-1"}],
           "name": [{"family": "佐藤", "given": ["花子"]}], "birthDate": "1970-01-02"}


def _obs(n, subject="urn:uuid:6e0f3c1a-0b55-4d7e-9b1e-111111111111", **extra):
    return {"resourceType": "Observation", "id": f"0bs{n:05d}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}], "text": "HbA1c"},
            "subject": {"reference": subject}, "effectiveDateTime": "2024-05-01T09:00:00+09:00",
            "valueQuantity": {"value": 6.1 + n / 100, "unit": "%", "system": "http://unitsofmeasure.org",
                              "code": "%"}, **extra}


def index_digest(node):
    """Every index row with its resource's (type, id) instead of the surrogate key."""
    out = []
    with node.engine.connect() as conn:
        for t in ALL_INDEX_TABLES:
            cols = [c for c in t.c if c.name not in ("resource_pk", "pk", "id")]
            stmt = select(resource.c.res_type, resource.c.res_id, *cols).join(
                resource, resource.c.pk == t.c.resource_pk)
            out.extend((t.name, *map(repr, row)) for row in conn.execute(stmt))
    return sorted(out)


def test_prepare_extracts_rows_for_entries_the_bundle_settles_and_leaves_the_rest():
    cond = _obs(2, subject="Patient?identifier=urn:example:mrn|A-1")
    post = {"fullUrl": "urn:uuid:9d9d9d9d-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Patient", "name": [{"family": "X"}]},
            "request": {"method": "POST", "url": "Patient"}}
    to_post = _obs(3, subject="urn:uuid:9d9d9d9d-0000-4000-8000-000000000001")
    b = _tx(_put(dict(PATIENT)), _put(_obs(1)), _put(cond), post, _put(to_post))
    prepared = bundle_mod.prepare(b, base_url=BASE)
    assert prepared is not None
    # Patient and the Observation referencing it by urn:uuid are settled; the conditional
    # reference and the reference to a POST entry need the transaction.
    assert sorted(prepared.final) == [0, 1]
    assert prepared.final[1]["subject"]["reference"] == f"Patient/{PATIENT['id']}"
    assert b["entry"][1]["resource"]["subject"]["reference"].startswith("urn:uuid:")  # input untouched
    assert prepared.extract(SearchRegistry.load_default()) == 0
    assert set(prepared.index) == {0, 1}


def test_prepare_raises_what_the_transaction_raises_for_an_invalid_entry():
    bad = _obs(1)
    bad["valueQuantity"]["value"] = "many"
    with pytest.raises(Exception) as exc:
        bundle_mod.prepare(_tx(_put(dict(PATIENT)), _put(bad)), base_url=BASE)
    assert "Bundle.entry[1].resource.valueQuantity" in str(exc.value.issues[0].expression)  # type: ignore[attr-defined]


def test_index_rows_do_not_depend_on_version_or_last_updated(node):
    res = {**_obs(1, subject="Patient/p1"), "meta": {"tag": [{"system": "urn:t", "code": "x"}]}}
    a = {**res, "meta": {**res["meta"], "versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"}}
    b = {**res, "meta": {**res["meta"], "versionId": "7", "lastUpdated": "2031-12-31T23:59:59.999Z"}}
    assert extract_rows(node.registry, "Observation", a) == extract_rows(node.registry, "Observation", b)


def test_rows_extracted_before_the_transaction_equal_a_reindex(node):
    bundle = _tx(_put(dict(PATIENT)), *[_put(_obs(n)) for n in range(30)])
    ingest_bundle(node, bundle, source="test")
    before = index_digest(node)
    assert len(before) > 30 * 4
    reindex(lambda: write_tx(node.engine), node.registry)
    assert index_digest(node) == before


def test_rows_prepared_for_other_content_are_not_used(node):
    with node.context(SYSTEM, write=True) as ctx:
        stale = extract_rows(node.registry, "Observation", _obs(9, subject="Patient/other"))
        ctx.repo.write_batch([Write("update", "Patient", "p1", {"resourceType": "Patient", "id": "p1"}),
                              Write("update", "Observation", "0bs00001", _obs(1, subject="Patient/p1"),
                                    index=(_obs(9, subject="Patient/other"), stale))])
    with node.engine.connect() as conn:
        targets = set(conn.execute(select(func.count()).select_from(resource)).scalars())
    assert targets == {2}
    refs = [r for r in index_digest(node) if r[0] == "search_reference" and r[2] == "'0bs00001'"]
    assert any("'p1'" in r for r in refs) and not any("'other'" in r for r in refs)


def test_reload_of_unchanged_bundle_runs_without_a_write_and_creates_no_version(node):
    ingest_bundle(node, _tx(_put(dict(PATIENT)), *[_put(_obs(n)) for n in range(5)]), source="test")
    with node.engine.connect() as conn:
        versions = conn.execute(select(func.count()).select_from(resource_version)).scalar_one()
    resp = ingest_bundle(node, _tx(_put(dict(PATIENT)), *[_put(_obs(n)) for n in range(5)]), source="test")
    assert [e["response"]["status"] for e in resp["entry"]] == ["200 OK"] * 6
    changed = _obs(4)
    changed["status"] = "amended"
    resp = ingest_bundle(node, _tx(_put(dict(PATIENT)), _put(changed)), source="test")
    assert [e["response"]["status"] for e in resp["entry"]] == ["200 OK", "200 OK"]
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(resource_version)).scalar_one() == versions + 1


def test_read_only_repository_stops_before_writing(node):
    with node.context(SYSTEM, write=False) as ctx:
        ctx.repo.read_only = True
        with pytest.raises(WriteNeeded):
            ctx.repo.write_batch([Write("update", "Patient", "p1", {"resourceType": "Patient", "id": "p1"})])
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(resource)).scalar_one() == 0


def _write(path, bundle):
    path.write_bytes(orjson.dumps(bundle))
    return path


def test_parallel_load_retries_a_file_that_needed_another_and_reports_failures_once(node, tmp_path):
    pid = "7a7a7a7a-1111-4222-8333-444444444444"
    patient = {**PATIENT, "id": pid}
    # a_dependent.json sorts first and needs the Patient that z_patient.json creates
    # (with many more resources, so it commits later): in the parallel phase it fails.
    dep = _write(tmp_path / "a_dependent.json", _tx(_put(_obs(1, subject=f"Patient/{pid}"))))
    big = _write(tmp_path / "z_patient.json", _tx(_put(patient), *[
        _put(_obs(n, subject=f"urn:uuid:{pid}")) for n in range(100, 400)]))
    bad_obs = _obs(2, subject=f"Patient/{pid}")
    bad_obs["valueQuantity"]["value"] = "many"
    bad = _write(tmp_path / "m_bad.json", _tx(_put(bad_obs)))
    report = load_paths(node, [dep, bad, big], workers=2)
    assert report.files == 3
    assert [w for w, _ in report.rejected] == [str(bad)]
    assert report.created["Observation"] == 301 and report.created["Patient"] == 1
    failures = list_failures(node, channel="load")
    assert [f.source for f in failures] == [str(bad)]
    again = load_paths(node, [dep, big], workers=2)
    assert again.rejected == [] and sum(again.unchanged.values()) == 302 and not again.created
