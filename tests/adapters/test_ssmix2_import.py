"""SS-MIX2 directory import against a real node: report per file, idempotent re-run,
updates (flag 2 -> new 1), deletions (flag 0), dead letters and replay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.feed import Feed, replay_one
from adapters.ssmix2.importer import import_tree, watch
from hie.ingest import list_failures
from hie.interactions import search as search_mod
from hie.principal import SYSTEM

from .corpus import FACILITY, storage_root

pytestmark = pytest.mark.corpus
TYPES = ("Patient", "Observation", "DiagnosticReport", "MedicationRequest", "MedicationAdministration", "Condition",
         "AllergyIntolerance", "Encounter", "ServiceRequest", "Specimen", "ImagingStudy", "Coverage",
         "NutritionOrder", "Organization")


def _versions(node) -> dict[str, str]:  # noqa: ANN001
    out = {}
    with node.context(SYSTEM, write=False) as ctx:
        for rtype in TYPES:
            body = search_mod.search_bundle(ctx, rtype, [("_count", "1000")])
            for e in body.get("entry") or ():
                r = e["resource"]
                out[f"{rtype}/{r['id']}"] = r["meta"]["versionId"]
    return out


def _search(node, rtype: str, params: list[tuple[str, str]]) -> list[dict]:  # noqa: ANN001
    with node.context(SYSTEM, write=False) as ctx:
        return [e["resource"] for e in search_mod.search_bundle(ctx, rtype, params).get("entry") or ()]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    shutil.copytree(storage_root(), root)
    return root


def test_sample_tree_imports_with_a_report_of_every_file(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    report = import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json")
    assert len(report.files) == 22
    by_status = report.counts()
    assert by_status == {"mapped": 19, "rejected": 3}
    for f in report.files:
        if f.status == "rejected":
            assert f.path.startswith("000/000/0000001/") and f.reason
    failures = list_failures(node, channel="ssmix2")
    assert len(failures) == 3 and all(f.payload for f in failures)
    patients = _search(node, "Patient", [])
    assert len(patients) == 1 and patients[0]["name"][0]["family"] == "患者"
    assert _search(node, "Organization", [("_id", "mi-" + FACILITY)])
    labs = _search(node, "Observation", [("code", "http://medis.or.jp/CodeSystem/master-JLAC10-17digits|3A010000002327101")])
    assert labs and labs[0]["valueQuantity"]["value"] == 7.2


def test_reimport_changes_nothing_even_without_the_state_file(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json")
    before = _versions(node)
    again = import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json")
    assert again.counts() == {"unchanged": 22}
    fresh = import_tree(node, tree, FACILITY, state_path=tmp_path / "other-state.json")
    assert fresh.counts() == {"mapped": 19, "rejected": 3}
    assert _versions(node) == before


def _omp01(tree: Path) -> Path:
    return next((tree / "999" / "901" / "9999013" / "20110701" / "OMP-01").iterdir())


def test_superseded_file_and_new_version_update_and_drop_stale_resources(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    state = tmp_path / "state.json"
    import_tree(node, tree, FACILITY, state_path=state)
    assert len(_search(node, "MedicationRequest", [])) == 3 + 3
    old = _omp01(tree)
    raw = old.read_bytes()
    # New version: Rp 2 dose changes 50 -> 60 mg; the second drug of Rp 1 is removed.
    segs = raw.split(b"\r")
    cut = [i for i, s in enumerate(segs) if s.startswith(b"ORC")]
    new_segs = segs[:cut[1]] + segs[cut[2]:]
    new_raw = b"\r".join(new_segs).replace(b"HOT9|50||MG", b"HOT9|60||MG")
    old.rename(old.with_name(old.name[:-1] + "2"))
    newer = old.with_name(old.name.replace("20110701224603984", "20110702090000000"))
    newer.write_bytes(new_raw)
    report = import_tree(node, tree, FACILITY, state_path=state)
    statuses = {f.path.rsplit("/", 1)[1]: f.status for f in report.files if f.status != "unchanged"}
    assert sorted(statuses.values()) == ["mapped", "superseded"]
    reqs = [r for r in _search(node, "MedicationRequest", []) if "JP_MedicationRequest" in r["meta"]["profile"][0]
            and not r["meta"]["profile"][0].endswith("Injection")]
    assert len(reqs) == 2
    alepiatin = next(r for r in reqs if r["medicationCodeableConcept"]["coding"][0]["code"] == "100607002")
    assert alepiatin["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 60


def test_deleted_file_deletes_what_the_order_produced(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    state = tmp_path / "state.json"
    import_tree(node, tree, FACILITY, state_path=state)
    lab = next((tree / "999" / "901" / "9999013" / "20111220" / "OML-11").iterdir())
    assert len(_search(node, "DiagnosticReport", [])) == 2
    deleted = lab.with_name(lab.name.replace("20111220103059000", "20111221000000000")[:-1] + "0")
    deleted.write_bytes(lab.read_bytes())
    lab.rename(lab.with_name(lab.name[:-1] + "2"))
    report = import_tree(node, tree, FACILITY, state_path=state)
    assert sorted(f.status for f in report.files if f.status != "unchanged") == ["deleted", "superseded"]
    reports = _search(node, "DiagnosticReport", [])
    assert len(reports) == 1  # the ECG report (OMG-13) stays
    assert not _search(node, "Observation", [("code", "http://medis.or.jp/CodeSystem/master-JLAC10-17digits|3A010000002327101")])
    assert len(_search(node, "Patient", [])) == 1


def test_failure_is_replayed_after_a_fix(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    # A file the node rejects: break PID-7 so mapping fails, then fix the payload and replay.
    adt = next((tree / "999" / "901" / "9999013" / "-" / "ADT-00").iterdir())
    good = adt.read_bytes()
    adt.write_bytes(good.replace(b"|19480405|M|", b"|19481305|M|"))
    report = import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json")
    bad = [f for f in report.files if f.kind == "ADT-00"][0]
    assert bad.status == "rejected" and bad.reason.startswith("PID-7")
    failure = next(f for f in list_failures(node, channel="ssmix2") if "ADT-00" in f.source)
    ok, err = replay_one(node, Feed(node), failure)
    assert not ok and err.startswith("PID-7")
    failure.payload = good  # the fix: what an operator would store after correcting the file
    ok, err = replay_one(node, Feed(node), failure)
    assert ok, err
    assert [f for f in list_failures(node, channel="ssmix2") if f.pk == failure.pk] == []


def test_watch_picks_up_new_files(node, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    target = tree / "999" / "901" / "9999013" / "20111220" / "OML-11"
    held = next(target.iterdir())
    data = held.read_bytes()
    held.unlink()
    reports = []
    watch(node, tree, FACILITY, interval=0, settle_seconds=0, rounds=1, on_report=reports.append,
          state_path=tmp_path / "state.json")
    held.write_bytes(data)
    watch(node, tree, FACILITY, interval=0, settle_seconds=0, rounds=1, on_report=reports.append,
          state_path=tmp_path / "state.json")
    assert [f.status for f in reports[1].files if f.status != "unchanged"] == ["mapped"]


def _copy_patient(tree: Path, src_pid: str, new_pid: str) -> None:
    """Copy a patient's folder under a new patient id (names and PID-3 follow)."""
    src = tree / src_pid[:3] / src_pid[3:6] / src_pid
    for f in src.rglob("*"):
        if f.is_file():
            rel = f.relative_to(src)
            out = tree / new_pid[:3] / new_pid[3:6] / new_pid / rel.parent / f.name.replace(src_pid, new_pid)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(f.read_bytes().replace(src_pid.encode(), new_pid.encode()))


def test_parallel_import_partitions_by_patient_and_matches_a_sequential_import(node, tree: Path,  # noqa: ANN001
                                                                               tmp_path: Path) -> None:
    sample = next(p.name for p in (tree / "999" / "901").iterdir())
    for n in range(3):
        _copy_patient(tree, sample, f"99901{n:02d}")
    report = import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json", workers=2, save_every=10)
    assert report.counts() == {"mapped": 19 * 4, "rejected": 3}
    assert len(list_failures(node, channel="ssmix2")) == 3
    local = [p for p in _search(node, "Patient", []) if any(
        i["system"].startswith("urn:oid:1.2.392.100495.20.3.51.1") for i in p.get("identifier", []))]
    assert sorted(i["value"] for p in local for i in p["identifier"] if i["system"].endswith(FACILITY)) == [
        "9990100", "9990101", "9990102", sample]
    versions = _versions(node)
    # the state file was merged from the workers: a re-run reads nothing again
    again = import_tree(node, tree, FACILITY, state_path=tmp_path / "state.json", workers=2)
    assert again.counts() == {"unchanged": 19 * 4 + 3}
    # and a sequential run without the state file changes nothing either
    third = import_tree(node, tree, FACILITY, state_path=tmp_path / "other.json")
    assert third.counts() == {"mapped": 19 * 4, "rejected": 3}
    assert [f.path for f in third.files] == [f.path for f in report.files]
    # (Patients are left out: the copies share a name and birth date, so identity links
    # them, and a facility's ADT update of a linked record is re-linked: a new version.)
    assert {k: v for k, v in _versions(node).items() if not k.startswith("Patient/")} == {
        k: v for k, v in versions.items() if not k.startswith("Patient/")}


def test_resource_the_node_rejects_is_reported_with_its_hl7_origin(node) -> None:  # noqa: ANN001
    from adapters.feed import IngestRejected
    from adapters.hl7v2.mapping import MappingResult

    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
           "valueQuantity": {"value": "many"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": obs, "request": {"method": "PUT", "url": "Observation/o1"}}]}
    result = MappingResult(bundle=bundle, control_id="1", message_type="OUL^R22", patient_number="1",
                           resource_count=1, origins={"Observation/o1": "OBX[2]"})
    with pytest.raises(IngestRejected) as exc:
        Feed(node).submit(result, facility=FACILITY, source="test")
    assert "Bundle.entry[0].resource.valueQuantity.value" in exc.value.text
    assert exc.value.text.endswith("(mapped from OBX[2])")
