"""Optimistic locking through a real HTTP server on PostgreSQL: two concurrent updates
carrying the same If-Match give one success and one 412 (https://hl7.org/fhir/R4/http.html#concurrency)."""

from __future__ import annotations

import threading

import httpx
import orjson

from tests.support import LiveServer

FHIR = {"Content-Type": "application/fhir+json"}


def test_concurrent_updates_with_same_if_match_one_wins(pg_node):
    from hie.api.app import create_app
    from hie.auth.service import system_token

    rounds = 15
    with LiveServer(create_app(pg_node, audit=False)) as srv:
        token = system_token(pg_node, "system/*.cruds", fhir_base=f"{srv.url}/fhir")
        auth = {"Authorization": f"Bearer {token}"}
        run_rounds(srv, auth, rounds)


def run_rounds(srv: LiveServer, auth: dict[str, str], rounds: int) -> None:
    with httpx.Client(base_url=srv.url, timeout=30, headers=auth) as setup:
        for i in range(rounds):
            body = {"resourceType": "Patient", "id": f"c{i}", "gender": "male"}
            assert setup.put(f"/fhir/Patient/c{i}", content=orjson.dumps(body), headers=FHIR).status_code == 201

        outcomes: list[tuple[int, int]] = []
        for i in range(rounds):
            barrier = threading.Barrier(2)
            statuses: list[int] = []
            lock = threading.Lock()

            def update(gender: str) -> None:
                body = {"resourceType": "Patient", "id": f"c{i}", "gender": gender}  # noqa: B023
                with httpx.Client(base_url=srv.url, timeout=30, headers=auth) as c:
                    barrier.wait()  # noqa: B023
                    r = c.put(f"/fhir/Patient/c{i}", content=orjson.dumps(body),  # noqa: B023
                              headers={**FHIR, "If-Match": 'W/"1"'})
                with lock:  # noqa: B023
                    statuses.append(r.status_code)  # noqa: B023

            threads = [threading.Thread(target=update, args=(g,)) for g in ("female", "other")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes.append((statuses.count(200), statuses.count(412)))
            final = setup.get(f"/fhir/Patient/c{i}").json()
            assert final["meta"]["versionId"] == "2"
            hist = setup.get(f"/fhir/Patient/c{i}/_history").json()
            assert hist["total"] == 2
        assert outcomes == [(1, 1)] * rounds
