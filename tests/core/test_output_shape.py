"""FHIR JSON has no empty arrays or objects (https://hl7.org/fhir/R4/json.html): not in any
Bundle kind the node answers (searchset, history, batch-response, transaction-response), not in
the CapabilityStatement or an OperationOutcome, and not in a resource a client sent with one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.auth.service import system_token

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def api(sqlite_node) -> Iterator[TestClient]:
    token = system_token(sqlite_node, "system/*.cruds", fhir_base="http://testserver/fhir")
    with TestClient(create_app(sqlite_node, audit=False), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def empties(value: Any, path: str = "$") -> list[str]:
    """Paths of the empty arrays and objects in ``value``."""
    if isinstance(value, dict):
        found = [path] if not value else []
        for k, v in value.items():
            found += empties(v, f"{path}.{k}")
        return found
    if isinstance(value, list):
        found = [path] if not value else []
        for i, v in enumerate(value):
            found += empties(v, f"{path}[{i}]")
        return found
    return []


def shaped(resp, status: int = 200) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert empties(body) == [], (resp.request.url, body)
    return body


def test_the_checker_finds_empty_arrays_and_objects():
    assert empties({"a": [], "b": [{"c": {}}], "d": 1}) == ["$.a", "$.b[0].c"]


@pytest.mark.parametrize("url", [
    "/fhir/Patient?family=nobody",
    "/fhir/Patient?family=nobody&_count=0",
    "/fhir/Patient/_history",
    "/fhir/_history",
    "/fhir/Observation?_include=Observation:subject&code=none",
])
def test_empty_bundles_have_no_entry_array(api, url):
    body = shaped(api.get(url))
    assert body["resourceType"] == "Bundle" and "entry" not in body and body["total"] == 0


def test_empty_form_search_and_pretty_output_have_no_entry_array(api):
    form = shaped(api.post("/fhir/Patient/_search", content=b"family=nobody",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert "entry" not in form
    pretty = api.get("/fhir/Patient?family=nobody&_pretty=true")
    assert b"[]" not in pretty.content and "entry" not in shaped(pretty)


def test_batch_and_transaction_responses(api):
    batch = shaped(api.post("/fhir", headers=FHIR, content=orjson.dumps({
        "resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient?family=nobody"}},
            {"request": {"method": "GET", "url": "Patient/none"}},
        ]})))
    assert batch["type"] == "batch-response"
    assert "entry" not in batch["entry"][0]["resource"]
    tx = shaped(api.post("/fhir", headers=FHIR, content=orjson.dumps({
        "resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1d1d5b5c-0c4e-4a64-9c3f-16b3a0b0d7a1",
             "resource": {"resourceType": "Patient", "name": [{"family": "空"}]},
             "request": {"method": "POST", "url": "Patient"}}]})))
    assert tx["type"] == "transaction-response"
    empty_tx = shaped(api.post("/fhir", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction", "entry": []})))
    assert empty_tx == {"resourceType": "Bundle", "type": "transaction-response"}


def test_history_and_search_with_entries(api):
    pid = shaped(api.post("/fhir/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "name": [{"family": "形"}]})), 201)["id"]
    assert shaped(api.get(f"/fhir/Patient/{pid}/_history"))["total"] == 1
    assert shaped(api.get("/fhir/Patient?family=形"))["total"] == 1


def test_a_resource_sent_with_empty_elements_comes_back_without_them(api):
    sent = {"resourceType": "Patient", "name": [], "telecom": [{}], "identifier": [
        {"system": "urn:oid:1.2.392.100495.20.3.51.11110000011", "value": "1", "period": {}}],
        "extension": []}
    created = shaped(api.post("/fhir/Patient", headers=FHIR, content=orjson.dumps(sent)), 201)
    assert "name" not in created and "telecom" not in created and "extension" not in created
    assert created["identifier"] == [{"system": "urn:oid:1.2.392.100495.20.3.51.11110000011", "value": "1"}]
    read = shaped(api.get(f"/fhir/Patient/{created['id']}"))
    assert "name" not in read
    updated = shaped(api.put(f"/fhir/Patient/{created['id']}", headers=FHIR, content=orjson.dumps(
        {**sent, "id": created["id"], "gender": "female"})))
    assert "telecom" not in updated


def test_capability_statement_and_outcomes(api):
    shaped(api.get("/fhir/metadata"))
    shaped(api.get("/fhir/Patient/none"), 404)
    shaped(api.get("/fhir/Patient?birthdate=notadate"), 400)
    shaped(api.post("/fhir/Patient", headers=FHIR, content=b"{"), 400)


# -- /docs and /redoc work offline ---------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_api_docs_pages_load_nothing_from_another_host(api, page):
    import re

    r = api.get(page, headers={"Authorization": ""})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert re.findall(r"(?:https?:)?//[\w.-]+", html.replace("window.location.origin", "")) == [], html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets or page.endswith("redirect")
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        got = api.get(url, headers={"Authorization": ""})
        assert got.status_code == 200 and len(got.content) > 500, url
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no badge calling an online validator


def test_vendored_assets_carry_their_licences():
    from hie.api.docs import STATIC

    for name in ("ORIGIN.md", "swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"):
        assert (STATIC / name).is_file(), name
    origin = (STATIC / "ORIGIN.md").read_text()
    assert "swagger-ui-dist" in origin and "5.35.0" in origin and "Apache-2.0" in origin
    assert "redoc" in origin and "2.5.4" in origin and "MIT" in origin


def test_api_docs_render_in_a_browser_that_reaches_no_other_host(sqlite_node, tmp_path):
    """Swagger UI lists the API and ReDoc draws it in headless Chromium whose resolver knows
    only 127.0.0.1: a closed hospital network."""
    import os
    import time
    from pathlib import Path

    from tests.support import LiveServer

    chromium = Path(os.environ.get("HIE_CHROMIUM", "/usr/bin/chromium"))
    driver_bin = Path(os.environ.get("HIE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    if not (chromium.exists() and driver_bin.exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI (scripts/test-setup.d/browser.sh)")
        pytest.skip("Chromium not installed (scripts/test-setup.d/browser.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(driver_bin)), options=options)
    driver.set_page_load_timeout(30)

    def wait_for(css: str) -> list:
        deadline = time.monotonic() + 20  # a hang guard, not a timing assertion
        while time.monotonic() < deadline:
            found = driver.find_elements(By.CSS_SELECTOR, css)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{css} never appeared: {driver.page_source[:500]}")

    try:
        with LiveServer(create_app(sqlite_node, audit=False)) as srv:
            driver.get(f"{srv.url}/docs")
            assert wait_for(".swagger-ui .info .title")[0].text.startswith("Regional HIE node")
            driver.get(f"{srv.url}/redoc")
            assert "Regional HIE node" in wait_for("redoc h1, .api-info h1")[0].text
    finally:
        driver.quit()
