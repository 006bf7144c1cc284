"""Builders and row inspectors shared by the identity service tests (not a test module)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hie.search.tables import ALL_INDEX_TABLES
from hie.storage.tables import resource as R
from hie.storage.tables import resource_version as V

REP = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
FACILITY = "urn:oid:1.2.392.100495.20.3.51.1"
MEMBER = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"
HOSPITAL_A, CLINIC_B, CLINIC_C = "0712345670", "0713333330", "0714444440"


def patient(pid: str, facility: str, number: str, *, family: str = "山田", family_kana: str = "ヤマダ",
            given: str = "太郎", given_kana: str = "タロウ", birth: str = "1970-01-02",
            address: str = "福島県福島市大町3-4-5", postal: str = "960-8041", phone: str = "090-1234-5678",
            member: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": FACILITY + facility, "value": number}],
        "name": [{"extension": [{"url": REP, "valueCode": "IDE"}], "family": family, "given": [given]},
                 {"extension": [{"url": REP, "valueCode": "SYL"}], "family": family_kana, "given": [given_kana]}],
        "gender": "male", "birthDate": birth,
        "address": [{"use": "home", "text": address, "postalCode": postal}],
        "telecom": [{"system": "phone", "value": phone}],
    }
    if member:
        res["identifier"].append({"system": MEMBER, "value": member})
    return res


def other_person(pid: str, facility: str, number: str) -> dict[str, Any]:
    return patient(pid, facility, number, family="鈴木", family_kana="スズキ", given="花子", given_kana="ハナコ",
                   birth="1980-05-05", address="東京都千代田区丸の内1-1", postal="100-0001", phone="03-1111-2222")


def observation(oid: str, pid: str, value: float = 5.6) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}], "text": "HbA1c"},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2024-04-01",
            "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}


def put(client: Any, res: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
    assert r.status_code in (200, 201), r.text
    return r.json()


def op(client: Any, name: str, *params: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    r = client.post(f"/fhir/Patient/${name}", json={"resourceType": "Parameters", "parameter": list(params)})
    assert r.status_code == expect, r.text
    return r.json()


def ref(name: str, pid: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": f"Patient/{pid}"}}


def param(out: dict[str, Any], name: str) -> Any:
    for p in out.get("parameter") or ():
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def row_keys(node: Any) -> dict[tuple[str, str], tuple[str | None, set[str | None], set[str | None]]]:
    """(type, id) -> (key on resource, keys on its versions, keys on its index rows)."""
    with node.engine.connect() as conn:
        by_pk = {pk: (t, i, k) for pk, t, i, k in conn.execute(
            select(R.c.pk, R.c.res_type, R.c.res_id, R.c.patient_key))}
        versions: dict[int, set[str | None]] = {}
        for pk, k in conn.execute(select(V.c.resource_pk, V.c.patient_key)):
            versions.setdefault(pk, set()).add(k)
        index: dict[int, set[str | None]] = {}
        for table in ALL_INDEX_TABLES:
            for pk, k in conn.execute(select(table.c.resource_pk, table.c.patient_key)):
                index.setdefault(pk, set()).add(k)
    return {(t, i): (k, versions.get(pk, set()), index.get(pk, set())) for pk, (t, i, k) in by_pk.items()}


def assert_keyed(node: Any, expected: dict[tuple[str, str], str]) -> None:
    """Each listed resource carries ``key`` on its row, on every version and every index row."""
    keys = row_keys(node)
    for what, key in expected.items():
        resource_key, version_keys, index_keys = keys[what]
        assert resource_key == key, (what, resource_key, key)
        assert version_keys == {key}, (what, version_keys, key)
        assert index_keys in ({key}, set()), (what, index_keys, key)


def resources_under_key(node: Any, key: str) -> set[tuple[str, str]]:
    """Everything of a regional person found through the search index tables by its key."""
    with node.engine.connect() as conn:
        pks: set[int] = set()
        for table in ALL_INDEX_TABLES:
            pks |= set(conn.execute(select(table.c.resource_pk).where(table.c.patient_key == key)).scalars())
        if not pks:
            return set()
        return {(t, i) for t, i in conn.execute(select(R.c.res_type, R.c.res_id).where(R.c.pk.in_(pks)))}


def key_of(node: Any, pid: str) -> str:
    return row_keys(node)[("Patient", pid)][0]  # type: ignore[return-value]
