"""The clinician viewer's pages over the app (TestClient), logged in through the node's own
authorization-code flow (login page, password + TOTP): search, the patient page and its
blocks, audit of what was shown, session and CSRF rules, break-the-glass and EHR launch.
The leak scan over the consent states of the leak suite is in test_viewer_leaks.py."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.audit.recorder import AuditRecorder
from hie.auth.service import AuthService
from tests.auth import helpers as h
from tests.web import viewer_helpers as vh

BASE = "http://127.0.0.1"


@pytest.fixture
def app(web_node):
    vh.load_demo(web_node)
    recorder = AuditRecorder(web_node, interval=None)
    with TestClient(create_app(web_node, audit=recorder), base_url=BASE) as c:
        yield c, web_node, recorder


def text_of(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def audit_events(c, node, recorder) -> list[dict]:
    from hie.auth.service import system_token

    recorder.flush()
    token = system_token(node, "system/AuditEvent.rs", fhir_base=f"{BASE}/fhir")
    bundle = c.get("/fhir/AuditEvent?_count=500", headers={"Authorization": f"Bearer {token}"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_login_lands_on_the_patient_search_cookie_is_httponly_lax_and_logout_needs_csrf(app):
    c, node, _ = app
    dr = vh.enrol(node, "dr-view")
    landed = vh.login(c, dr, "dr-view")
    assert landed.headers["location"] == "/viewer/"
    cookie = next(v for k, v in landed.request.headers.items() if k == "cookie")
    assert "hie_viewer=" in cookie
    page = c.get("/viewer/")
    assert page.status_code == 200 and '<html lang="ja">' in page.text and "患者検索" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # the session cookie as set at the start of the login
    start = TestClient(c.app, base_url=BASE).get("/viewer/", follow_redirects=False)
    set_cookie = start.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/viewer" in set_cookie
    assert "secure" not in set_cookie  # plain http on loopback; https sets Secure

    # logout needs the CSRF token, and revokes the refresh token
    c.post("/viewer/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert c.get("/viewer/", follow_redirects=False).status_code == 200  # still logged in
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/viewer/").text).group(1)
    session = node.service("viewer_sessions", lambda: None).get(c.cookies.get("hie_viewer"))
    c.post("/viewer/logout", data={"csrf": csrf}, follow_redirects=False)
    assert c.get("/viewer/", follow_redirects=False).status_code == 303
    from hie.web.session import ViewerError, refresh

    with pytest.raises(ViewerError):  # the refresh token was revoked at logout
        refresh(node, session, BASE)


def test_not_logged_in_goes_to_the_node_login_page(app):
    c, _node, _ = app
    r = c.get("/viewer/patient/demo-p1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/authorize?")
    q = vh.query_of(r.headers["location"])
    assert q["redirect_uri"] == f"{BASE}/viewer/callback" and q["code_challenge_method"] == "S256"
    assert q["aud"] == f"{BASE}/fhir" and "user/*.rs" in q["scope"]


def test_search_by_kana_and_number_then_the_patient_page(app):
    c, node, recorder = app
    dr = vh.enrol(node, "dr-view")
    vh.login(c, dr, "dr-view")
    for query in ("name=やまだ+たろう", "name=ﾔﾏﾀﾞ", "name=山田&birthdate=1950-04-12&gender=male",
                  "facility=1110000011&number=0001234"):
        page = c.get(f"/viewer/?{query}")
        assert page.status_code == 200
        assert 'href="/viewer/patient/demo-p1"' in page.text, query
        assert "demo-p2" not in page.text
    none = c.get("/viewer/?name=やまだ+はなこ")
    assert 'id="no-results"' in none.text

    page = c.get("/viewer/patient/demo-p1")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "山田 太郎" in text and "ヤマダ タロウ" in text
    assert "1950年4月12日（昭和25年4月12日）" in text
    # allergies first, every line with its source facility
    assert page.text.index('id="allergies"') < page.text.index('id="meds"') < page.text.index('id="trend-0"')
    for facility in ("利根地域中央病院", "すぎと内科クリニック", "みやしろ薬局", "利根臨床検査センター"):
        assert facility in text
    # one medication row for metformin 250 mg: two prescribers and the pharmacy
    row = re.search(r'<tr class="drug state-current">.*?HOT9 103835401.*?</tr>', page.text, flags=re.S)
    assert row and row.group(0).count("<li>") == 3 and "用法・用量が施設間で異なる" in row.group(0)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="trend"' in page.text and "<title id=" in page.text
    en = c.get("/viewer/patient/demo-p1?lang=en")
    assert '<html lang="en">' in en.text and "Medications across facilities" in en.text
    assert "1950-04-12 (Showa 25-04-12)" in en.text

    events = [e for e in audit_events(c, node, recorder)
              if any(s.get("code") == "patient" for s in e.get("subtype", []))]
    assert events, "the patient page view is audited"
    shown = {ent["what"]["reference"] for ent in events[-1]["entity"] if "what" in ent}
    assert "Patient/demo-p1" in shown and {"MedicationDispense/demo-m3", "AllergyIntolerance/demo-a1",
                                           "Observation/demo-h1"} <= shown
    search = [e for e in audit_events(c, node, recorder)
              if any(s.get("code") == "patient-search" for s in e.get("subtype", []))]
    assert search and any(ent.get("what", {}).get("reference") == "Patient/demo-p1" for ent in search[0]["entity"])


def test_excluded_facility_sees_nothing_and_unknown_patient_looks_the_same(app):
    c, node, _ = app
    dentist = vh.enrol(node, "dr-dental", org=vh.KUKI_DENTAL)
    vh.login(c, dentist, "dr-dental")
    hidden = c.get("/viewer/patient/demo-p1")
    unknown = c.get("/viewer/patient/no-such-patient")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.text == unknown.text
    for marker in ("山田", "ヤマダ", "メトホルミン", "HbA1c", "ペニシリン", "demo-"):
        assert marker not in hidden.text
    search = c.get("/viewer/?name=ヤマダ")
    assert 'id="no-results"' in search.text and "demo-p1" not in search.text
    # without the emergency role there is no break-the-glass
    assert 'id="glass-link"' not in c.get("/viewer/patient/demo-p1").text
    form = c.get("/viewer/patient/demo-p1/glass")
    r = c.post("/viewer/patient/demo-p1/glass", data={"csrf": _csrf(form.text), "reason": "test", "purpose": "ETREAT"})
    assert r.status_code == 403 and "救急ロール" in r.text
    assert c.get("/viewer/patient/demo-p1").status_code == 404


def test_callback_with_a_foreign_state_is_refused(app):
    c, node, _ = app
    c.get("/viewer/", follow_redirects=False)
    r = c.get("/viewer/callback?code=x&state=not-mine")
    assert r.status_code == 400


def test_a_patient_account_is_told_the_viewer_is_for_staff(app):
    """A patient who signs in to the clinician viewer gets a clear page (403), not "the page
    has expired" with the token endpoint's error text, and no session."""
    from urllib.parse import urlsplit

    c, node, _ = app
    pt = vh.enrol(node, "pt-viewer", kind="patient", patient_id="demo-p1")
    r = c.get("/viewer/", follow_redirects=False)
    assert r.status_code == 303 and urlsplit(r.headers["location"]).path == "/auth/authorize"
    page = c.get(r.headers["location"])
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields = {k: v.replace("&amp;", "&").replace("&#34;", '"') for k, v in fields.items()}
    done = c.post("/auth/login", data={**fields, "username": "pt-viewer", "password": pt.password,
                                       "otp": vh.totp(pt), "decision": "allow"}, follow_redirects=False)
    answer = c.get(done.headers["location"], follow_redirects=False)
    assert answer.status_code == 403
    assert "職員用" in answer.text and "invalid_scope" not in answer.text and "有効期限" not in answer.text


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_break_the_glass_shows_the_banner_and_the_emergency_dataset_only(app):
    c, node, recorder = app
    er = vh.enrol(node, "dr-er", org=vh.KUKI_DENTAL, roles=["emergency-clinician"])
    vh.login(c, er, "dr-er")
    before = c.get("/viewer/patient/demo-p1")
    assert before.status_code == 404 and 'id="glass-link"' in before.text
    form = c.get("/viewer/patient/demo-p1/glass")
    assert form.status_code == 200
    empty = c.post("/viewer/patient/demo-p1/glass", data={"csrf": _csrf(form.text), "reason": " ", "purpose": "ETREAT"})
    assert empty.status_code == 400 and "理由を入力してください" in empty.text
    r = c.post("/viewer/patient/demo-p1/glass", data={"csrf": _csrf(form.text), "reason": "救急搬送、意識障害",
                                                      "purpose": "ETREAT"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = c.get("/viewer/patient/demo-p1")
    assert page.status_code == 200 and 'id="glass-banner"' in page.text
    text = text_of(page.text)
    assert "ペニシリン系抗菌薬" in text and "2型糖尿病" in text  # allergy, active problem
    assert "ロキソプロフェン" not in text  # a stopped drug is outside the emergency dataset
    assert "2025年12月5日" not in text  # a lab older than 30 days is outside it
    other = c.get("/viewer/patient/demo-p2")
    assert 'id="glass-banner"' not in other.text  # the glass is for this patient only
    events = audit_events(c, node, recorder)
    glass = [e for e in events if any(s.get("code") == "break-glass" for s in e.get("subtype", []))]
    assert glass and glass[0]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"


def _launch(c, node, patient: str, org: str = vh.TONE_CENTRAL) -> tuple[int, dict]:
    ehr = h.backend(node, scope="system/Patient.rs", org=org)
    token = AuthService.for_node(node).token_for_client(ehr.client_id, "system/Patient.rs", fhir_base=f"{BASE}/fhir")
    r = c.post("/viewer/launch-context", data={"patient": patient}, headers={"Authorization": f"Bearer {token.token}"})
    return r.status_code, r.json()


def test_ehr_launch_opens_the_right_patient(app):
    c, node, recorder = app
    status, body = _launch(c, node, "demo-p4")
    assert status == 200, body
    url = body["url"].removeprefix(BASE)
    dr = vh.enrol(node, "dr-view")
    landed = vh.login(c, dr, "dr-view", start=url)
    assert landed.headers["location"] == "/viewer/patient/demo-p4"
    page = c.get(landed.headers["location"])
    assert page.status_code == 200 and "髙橋 美咲" in page.text


def test_ehr_launch_of_another_facility_does_not_set_the_patient(app):
    c, node, _ = app
    status, body = _launch(c, node, "demo-p4")
    assert status == 200
    other = vh.enrol(node, "dr-hanyu", org=vh.HANYU)
    landed = vh.login(c, other, "dr-hanyu", start=body["url"].removeprefix(BASE))
    assert landed.headers["location"] == "/viewer/"  # no launch patient for another facility's user


def test_launch_context_for_a_patient_the_ehr_cannot_see_is_404(app):
    c, node, _ = app
    status, body = _launch(c, node, "demo-p1", org=vh.KUKI_DENTAL)
    assert status == 404 and body["resourceType"] == "OperationOutcome"
    status, _ = _launch(c, node, "no-such")
    assert status == 404
    assert c.post("/viewer/launch-context", data={"patient": "demo-p4"}).status_code == 401
