"""Request limits (issue 13 acceptance 5; issue 19 item 3): a body beyond the limit is refused
with 413 while it is read (Content-Length first; chunked bodies at the chunk that crosses the
limit), a JSON string beyond the element limit is refused with 413 and its path, the limits
come from the settings, and a data route answers an anonymous request 401 before it reads the
body. Over the app in process (TestClient) and over a real uvicorn socket where the wire
matters (chunked transfer, a body that never arrives)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.api.limits import Limits
from hie.auth.service import system_token
from hie.config import Settings
from tests.support import LiveServer

FHIR = {"Content-Type": "application/fhir+json"}
LIMITS = Limits(max_body=8192, max_element=1024)


@pytest.fixture
def limited(sqlite_node) -> Iterator[TestClient]:
    token = system_token(sqlite_node, "system/*.cruds", fhir_base="http://testserver/fhir")
    with TestClient(create_app(sqlite_node, audit=False, limits=LIMITS), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def patient_of_size(size: int) -> bytes:
    """A Patient whose request body is exactly ``size`` bytes (JSON allows trailing blanks)."""
    body = orjson.dumps({"resourceType": "Patient", "name": [{"family": "山田", "given": ["太郎"]}]})
    return body + b" " * (size - len(body))


def outcome(resp) -> dict:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


def hie_code(issue: dict) -> str:
    return issue["details"]["coding"][0]["code"]


# -- body limit ------------------------------------------------------------------------


def test_body_at_the_limit_is_accepted_and_one_byte_more_is_413(limited):
    ok = limited.post("/fhir/Patient", content=patient_of_size(LIMITS.max_body), headers=FHIR)
    assert ok.status_code == 201, ok.text
    over = limited.post("/fhir/Patient", content=patient_of_size(LIMITS.max_body + 1), headers=FHIR)
    assert over.status_code == 413
    issue = outcome(over)
    assert issue["code"] == "too-long" and hie_code(issue) == "HIE-1012"
    assert str(LIMITS.max_body) in issue["diagnostics"]


@pytest.mark.parametrize(("path", "ctype"), [
    ("/fhir/Observation/_search", "application/x-www-form-urlencoded"),
    ("/fhir/Patient/$match", "application/fhir+json"),
    ("/fhir", "application/fhir+json"),
    ("/auth/token", "application/x-www-form-urlencoded"),
    ("/auth/register", "application/json"),
])
def test_every_route_refuses_a_body_over_the_limit(limited, path, ctype):
    headers = {"Content-Type": ctype}
    if path == "/auth/register":  # authenticates (operators only) before it reads the body
        from hie.auth.service import AuthService
        from tests.auth.helpers import backend

        node = limited.app.state.node
        op = backend(node, scope="system/*.rs", roles=["operator"])
        token = AuthService.for_node(node).token_for_client(op.client_id, "system/*.rs",
                                                            fhir_base="http://testserver/fhir").token
        headers["Authorization"] = f"Bearer {token}"
    r = limited.post(path, content=b"a" * (LIMITS.max_body + 10), headers=headers)
    assert r.status_code == 413, r.text
    assert hie_code(outcome(r)) == "HIE-1012"


def test_batch_over_the_body_limit_is_413_and_stores_nothing(limited):
    entries = [{"resource": {"resourceType": "Patient", "name": [{"family": f"f{i}" * 20}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(60)]
    r = limited.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}),
                     headers=FHIR)
    assert r.status_code == 413
    assert limited.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_chunked_body_without_content_length_is_counted(limited):
    def chunks(total: int) -> Iterator[bytes]:
        body = patient_of_size(total)
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    ok = limited.post("/fhir/Patient", content=chunks(LIMITS.max_body - 100), headers=FHIR)
    assert ok.status_code == 201, ok.text
    over = limited.post("/fhir/Patient", content=chunks(LIMITS.max_body + 100), headers=FHIR)
    assert over.status_code == 413 and hie_code(outcome(over)) == "HIE-1012"


# -- element limit ---------------------------------------------------------------------


def test_a_string_over_the_element_limit_is_413_with_its_path(limited):
    body = {"resourceType": "Patient", "name": [{"family": "山田"}, {"family": "x", "given": ["a", "b" * 1025]}]}
    r = limited.post("/fhir/Patient", content=orjson.dumps(body), headers=FHIR)
    assert r.status_code == 413
    issue = outcome(r)
    assert hie_code(issue) == "HIE-1013" and issue["code"] == "too-long"
    assert issue["expression"] == ["Patient.name[1].given[1]"]


def test_the_element_limit_counts_utf8_bytes(limited):
    within = {"resourceType": "Patient", "name": [{"family": "山" * 341}]}  # 1023 bytes
    over = {"resourceType": "Patient", "name": [{"family": "山" * 342}]}  # 1026 bytes, 342 characters
    assert limited.post("/fhir/Patient", content=orjson.dumps(within), headers=FHIR).status_code == 201
    r = limited.post("/fhir/Patient", content=orjson.dumps(over), headers=FHIR)
    assert r.status_code == 413 and outcome(r)["expression"] == ["Patient.name[0].family"]


def test_a_batch_entry_with_a_long_element_names_the_entry(limited):
    entries = [
        {"resource": {"resourceType": "Patient", "name": [{"family": "ok"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "note": [{"text": "n" * 2000}]}, "request": {"method": "POST", "url": "Observation"}},
    ]
    r = limited.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}),
                     headers=FHIR)
    assert r.status_code == 413
    assert outcome(r)["expression"] == ["Bundle.entry[1].resource.note[0].text"]
    assert limited.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_a_long_property_name_and_a_long_form_value_are_413(limited):
    r = limited.post("/fhir/Patient", content=orjson.dumps({"resourceType": "Patient", "k" * 1100: 1}), headers=FHIR)
    assert r.status_code == 413 and outcome(r)["expression"] == ["Patient"]
    form = limited.post("/fhir/Patient/_search", content=f"family={'x' * 1100}".encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 413 and outcome(form)["expression"] == ["family"]


# -- configuration ---------------------------------------------------------------------


def test_limits_come_from_the_environment(tmp_path):
    s = Settings.from_env({"HIE_DATA_DIR": str(tmp_path), "HIE_MAX_BODY_BYTES": "5000",
                           "HIE_MAX_ELEMENT_BYTES": "700"})
    assert Limits.of(s) == Limits(max_body=5000, max_element=700)
    d = Settings.from_env({"HIE_DATA_DIR": str(tmp_path)})
    assert Limits.of(d) == Limits(max_body=16 * 1024 * 1024, max_element=4 * 1024 * 1024)


def test_the_app_applies_the_node_settings(sqlite_node):
    import dataclasses

    from hie.app import Node

    small = Node(dataclasses.replace(sqlite_node.settings, max_body_bytes=3000, max_element_bytes=400))
    try:
        token = system_token(small, "system/*.cruds", fhir_base="http://testserver/fhir")
        with TestClient(create_app(small, audit=False), base_url="http://testserver",
                        headers={"Authorization": f"Bearer {token}"}) as c:
            long = {"resourceType": "Patient", "name": [{"family": "x" * 500}]}
            assert c.post("/fhir/Patient", content=orjson.dumps(long), headers=FHIR).status_code == 413
            assert c.post("/fhir/Patient", content=b" " * 3001, headers=FHIR).status_code == 413
            short = {"resourceType": "Patient", "name": [{"family": "x" * 300}]}
            assert c.post("/fhir/Patient", content=orjson.dumps(short), headers=FHIR).status_code == 201
    finally:
        small.close()


# -- on the wire: nothing read beyond the limit, nothing read before authentication -------


def _raw(port: int, head: bytes, chunks: list[bytes] = ()) -> bytes:
    """Send ``head`` (and ``chunks``) and return what the server answers, without ever
    finishing the body: an answer proves the server did not wait for the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head)
        for c in chunks:
            s.sendall(c)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            got = s.recv(65536)
            if not got:
                break
            data += got
        return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.fixture
def live(sqlite_node) -> Iterator[tuple[LiveServer, str]]:
    with LiveServer(create_app(sqlite_node, audit=False, limits=LIMITS)) as srv:
        token = system_token(sqlite_node, "system/*.cruds", fhir_base=f"{srv.url}/fhir")
        yield srv, token


def test_declared_length_over_the_limit_is_refused_before_the_body(live):
    srv, token = live
    head = (f"POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/fhir+json\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
    answer = _raw(srv.port, head, [b"{"])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"HIE-1012" in answer and b"connection: close" in answer.lower()  # the rest is not drained
    anonymous = head.replace(f"Authorization: Bearer {token}\r\n".encode(), b"")
    answer = _raw(srv.port, anonymous, [b"{"])
    assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer.lower(), answer[:300]


def test_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit(live):
    srv, token = live
    head = (f"POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
    answer = _raw(srv.port, head, [chunk, chunk, chunk])  # 12 KiB sent, the body never ends
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_anonymous_data_request_is_401_before_its_body_is_read(live):
    srv, _ = live
    for path, ctype in (("/fhir/Patient", "application/fhir+json"), ("/fhir", "application/fhir+json"),
                        ("/fhir/Observation/_search", "application/x-www-form-urlencoded"),
                        ("/fhir/Patient/$match", "application/fhir+json")):
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                "Content-Length: 4000\r\n\r\n").encode()
        answer = _raw(srv.port, head)  # headers only: a server reading the body would wait
        assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:300])


def test_anonymous_invalid_json_is_401_not_400(limited):
    r = limited.post("/fhir/Patient", content=b"{not json", headers={**FHIR, "Authorization": ""})
    assert r.status_code == 401


def test_nesting_deeper_than_the_bound_is_400_not_500(limited):
    # 400 JSON levels (object, array) below the Patient, written out (orjson.dumps stops at 254)
    deep = b'{"url":"http://example.org/e","valueString":"x"}'
    for _ in range(200):
        deep = b'{"url":"http://example.org/e","extension":[' + deep + b"]}"
    body = b'{"resourceType":"Patient","extension":[' + deep + b"]}"
    r = TestClient(create_app(limited.app.state.node, audit=False, limits=Limits(10**7, 10**6)),
                   base_url="http://testserver", headers=dict(limited.headers)).post(
        "/fhir/Patient", content=body, headers=FHIR)
    assert r.status_code == 400, r.text[:300]
    assert hie_code(outcome(r)) == "HIE-1002" and "nested deeper" in outcome(r)["diagnostics"]


def test_refused_bodies_and_anonymous_posts_are_audited(sqlite_node):
    from sqlalchemy import select

    from hie.audit.recorder import AuditRecorder
    from hie.storage.tables import resource

    rec = AuditRecorder(sqlite_node, interval=None)
    token = system_token(sqlite_node, "system/*.cruds", fhir_base="http://testserver/fhir")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(sqlite_node, audit=rec, limits=LIMITS), base_url="http://testserver") as c:
        assert c.post("/fhir/Patient", content=b"{", headers={**auth, **FHIR}).status_code == 400
        assert c.post("/fhir/Patient", content=b"{}", headers={**auth, "Content-Type": "text/csv"}).status_code == 415
        assert c.post("/fhir/Patient", content=b" " * 9000, headers={**auth, **FHIR}).status_code == 413
        assert c.post("/fhir/Patient", content=b"{}", headers=FHIR).status_code == 401
    rec.flush()
    with sqlite_node.engine.connect() as conn:
        events = [orjson.loads(x) for x in conn.execute(
            select(resource.c.content).where(resource.c.res_type == "AuditEvent")).scalars()]
    described = sorted(e.get("outcomeDesc", "") for e in events)
    assert len(events) == 4, described
    assert all(e["outcome"] != "0" for e in events)
    assert any("not valid JSON" in d for d in described) and any("text/csv" in d for d in described)
    assert any("larger than" in d for d in described)
