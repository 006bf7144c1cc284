"""The CapabilityStatement's ``rest.security`` (SMART on FHIR service code and the oauth-uris
extension) agrees with ``.well-known/smart-configuration`` for a base taken from the request
and for a configured ``HIE_BASE_URL`` (also one under a path, ending in ``/``); each endpoint
it names exists. Subscription is refused on every write path and listed read-only.

Spec: https://hl7.org/fhir/smart-app-launch/conformance.html ;
https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.security
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FHIR = {"Content-Type": "application/fhir+json"}
#: oauth-uris sub-extension -> smart-configuration field
SAME_AS = {"authorize": "authorization_endpoint", "token": "token_endpoint", "register": "registration_endpoint",
           "introspect": "introspection_endpoint", "revoke": "revocation_endpoint"}


@contextmanager
def app_at(node: Any, base_url: str | None, origin: str) -> Iterator[TestClient]:
    saved = node.settings
    node.settings = dataclasses.replace(saved, base_url=base_url)
    try:
        with TestClient(node.create_app(), base_url=origin) as c:
            yield c
    finally:
        node.settings = saved


def oauth_uris(statement: dict[str, Any]) -> dict[str, str]:
    security = statement["rest"][0]["security"]
    [ext] = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    return {e["url"]: e["valueUri"] for e in ext["extension"]}


@pytest.mark.parametrize("configured,origin,auth_base", [
    (None, "http://node.local:8123", "http://node.local:8123/auth"),
    ("https://hie.example.jp/fhir", "http://127.0.0.1:8080", "https://hie.example.jp/auth"),
    ("https://hie.example.jp/api/fhir/", "http://127.0.0.1:8080", "https://hie.example.jp/api/auth"),
])
def test_security_names_the_smart_endpoints_of_this_base(sqlite_node, configured, origin, auth_base):
    with app_at(sqlite_node, configured, origin) as c:
        statement = c.get("/fhir/metadata").json()  # public, no token
        smart = c.get("/fhir/.well-known/smart-configuration").json()
    CapabilityStatement.model_validate(statement)  # a valid resource, extension included
    security = statement["rest"][0]["security"]
    assert security["cors"] is False
    assert security["service"][0]["coding"] == [{
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR",
        "display": "SMART-on-FHIR"}]
    uris = oauth_uris(statement)
    assert list(uris) == ["authorize", "token", "register", "introspect", "revoke"]  # no "manage" page exists
    assert uris == {name: smart[key] for name, key in SAME_AS.items()}
    assert all(u.startswith(auth_base + "/") for u in uris.values()), uris
    assert smart["issuer"] == auth_base
    assert statement["implementation"]["url"] == (configured or origin + "/fhir").rstrip("/")


def test_every_named_endpoint_exists(sqlite_node):
    with app_at(sqlite_node, None, "http://127.0.0.1:8080") as c:  # OAuth over http: loopback only
        uris = oauth_uris(c.get("/fhir/metadata").json())
        assert c.get(urlsplit(uris["authorize"]).path).status_code != 404
        for name in ("token", "register", "introspect", "revoke"):
            r = c.post(urlsplit(uris[name]).path, data={})
            assert r.status_code not in (404, 405), (name, r.status_code)


# -- Subscription: refused until subscriptions exist --------------------------------------------

SUBSCRIPTION = {"resourceType": "Subscription", "status": "requested", "reason": "notify me",
                "criteria": "Observation?code=1234-5", "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/"}}


def _refused(outcome: dict[str, Any]) -> None:
    issue = outcome["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["details"]["coding"][0]["code"] == "HIE-3007"
    assert "subscriptions are not supported by this node" in issue["diagnostics"]


def test_subscription_is_refused_on_every_write_path(client):
    r = client.post("/fhir/Subscription", content=orjson.dumps(SUBSCRIPTION), headers=FHIR)
    assert r.status_code == 501
    _refused(r.json())
    r = client.put("/fhir/Subscription/s1", content=orjson.dumps({**SUBSCRIPTION, "id": "s1"}), headers=FHIR)
    assert r.status_code == 501
    _refused(r.json())
    entry = {"resource": SUBSCRIPTION, "request": {"method": "POST", "url": "Subscription"}}
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "transaction",
                                                   "entry": [entry]}), headers=FHIR)
    assert r.status_code == 501
    _refused(r.json())
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch",
                                                   "entry": [entry]}), headers=FHIR)
    assert r.status_code == 200
    assert r.json()["entry"][0]["response"]["status"].startswith("501")
    _refused(r.json()["entry"][0]["response"]["outcome"])
    found = client.get("/fhir/Subscription").json()
    assert found["total"] == 0 and "entry" not in found


def test_capability_statement_lists_subscription_read_only(client):
    statement = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    sub = by_type["Subscription"]
    codes = {i["code"] for i in sub["interaction"]}
    assert not codes & {"create", "update", "patch"}
    assert {"read", "search-type", "delete"} <= codes
    assert sub["conditionalCreate"] is False and sub["conditionalUpdate"] is False
    assert {"create", "update", "patch"} <= {i["code"] for i in by_type["Observation"]["interaction"]}
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]


def test_subscription_is_refused_on_the_feed_path_too(sqlite_node):
    from hie.errors import FhirError
    from hie.ingest import ingest_bundle

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**SUBSCRIPTION, "id": "feed-sub"}, "request": {"method": "PUT", "url": "Subscription/feed-sub"}}]}
    with pytest.raises(FhirError) as exc:
        ingest_bundle(sqlite_node, bundle, source="test")
    assert exc.value.status == 501
    _refused(exc.value.to_outcome())
