"""The clinician viewer in a real headless Chromium (issue 14, acceptance 4): a clinician
logs in through the node's login page (password + TOTP), searches by kana name, opens the
patient, sees the lab trend chart and the source facility names; the patient revokes consent
through the FHIR API and the next page load shows nothing of theirs; an EHR launch opens the
right patient; break-the-glass shows the banner and the emergency dataset only; a screenshot
check proves Japanese glyphs are drawn.

Chromium and chromedriver come from Debian (``scripts/test-setup.d/browser.sh``); without
them the test is skipped locally and fails under CI (``CI=true``), as test_login_page.py.
"""

from __future__ import annotations

import httpx
import orjson

from hie.auth.service import LOCAL_CLIENT_ID, AuthService
from hie.auth.users import get_by_username
from tests.auth import helpers as h
from tests.browser.test_login_page import _text_shot, browser, live  # noqa: F401 - fixtures
from tests.web import viewer_helpers as vh


def _wait(driver, cond, timeout: int = 15):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def _sign_in(driver, username: str, who) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _wait(driver, ec.presence_of_element_located((By.ID, "username")))
    assert driver.title == "地域医療連携ネットワーク ログイン"
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(who.password)
    driver.find_element(By.ID, "otp").send_keys(vh.totp(who))
    driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    _wait(driver, lambda d: "/viewer/" in d.current_url)


def _sign_out(driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form[action='/viewer/logout'] button").click()
    _wait(driver, lambda d: "/auth/authorize" in d.current_url)


def _patient_token(node, url: str) -> str:  # noqa: ANN001
    vh.enrol(node, "pt-yamada", kind="patient", patient_id="demo-p1")
    svc = AuthService.for_node(node)
    with node.engine.begin() as conn:
        svc.ensure_local_client(conn)
        user = get_by_username(conn, "pt-yamada").with_launch("demo-p1")
        return svc.tokens.issue(conn, issuer=f"{url}/auth", audience=f"{url}/fhir", client_id=LOCAL_CLIENT_ID,
                                kind="patient", scope=["patient/*.cruds"], expires_in=600, user=user,
                                patient_id="demo-p1").token


def test_clinician_finds_the_patient_sees_trends_and_loses_them_when_consent_is_revoked(browser, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    url, node = live
    vh.load_demo(node)
    dr = vh.enrol(node, "dr-hanyu", org=vh.HANYU)  # sees 山田太郎's records only through his consent

    browser.get(f"{url}/viewer/")
    _sign_in(browser, "dr-hanyu", dr)
    assert browser.find_element(By.TAG_NAME, "h1").text == "患者検索"
    browser.find_element(By.ID, "name").send_keys("やまだ たろう")
    browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()
    table = _wait(browser, ec.presence_of_element_located((By.ID, "results")))
    assert "山田 太郎" in table.text and "ヤマダ タロウ" in table.text
    table.find_element(By.LINK_TEXT, "開く").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "patient-kanji")))
    assert browser.find_element(By.ID, "patient-birth").text == "1950年4月12日（昭和25年4月12日）"
    chart = browser.find_element(By.CSS_SELECTOR, "svg.trend")
    assert chart.is_displayed() and chart.size["width"] > 200
    assert "HbA1c" in browser.find_element(By.CSS_SELECTOR, "svg.trend title").get_attribute("textContent")
    body = browser.find_element(By.TAG_NAME, "body").text
    for facility in ("利根臨床検査センター", "すぎと内科クリニック", "みやしろ薬局", "利根地域中央病院"):
        assert facility in body
    (tmp_path / "viewer-patient.png").write_bytes(browser.get_screenshot_as_png())

    # Japanese glyphs: the patient's name is not drawn as the empty boxes of a missing font.
    name, tofu, blank = _text_shot(browser, "山田太郎"), _text_shot(browser, "\ue000\ue001\ue002\ue003"), \
        _text_shot(browser, "")
    assert name != blank and name != tofu, "Japanese text renders as empty boxes (no Japanese font)"

    # The patient revokes the consent through the FHIR API; the next page load shows nothing.
    token = _patient_token(node, url)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    consent = httpx.get(f"{url}/fhir/Consent/demo-consent-p1", headers=auth).json()
    consent["status"] = "inactive"
    revoked = httpx.put(f"{url}/fhir/Consent/demo-consent-p1", content=orjson.dumps(consent), headers=auth)
    assert revoked.status_code == 200, revoked.text
    browser.refresh()
    alert = _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "患者が見つかりません" in alert.text
    source = browser.page_source
    for marker in ("山田", "ヤマダ", "HbA1c", "メトホルミン", "ペニシリン"):
        assert marker not in source
    _sign_out(browser)


def test_ehr_launch_and_break_the_glass_in_chromium(browser, live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    url, node = live
    vh.load_demo(node)
    dr = vh.enrol(node, "dr-tone", org=vh.TONE_CENTRAL)
    er = vh.enrol(node, "dr-er", org=vh.KUKI_DENTAL, roles=["emergency-clinician"])

    # The hospital's EHR asks for a launch of its current patient and opens the viewer with it.
    ehr = h.backend(node, scope="system/Patient.rs", org=vh.TONE_CENTRAL)
    token = AuthService.for_node(node).token_for_client(ehr.client_id, "system/Patient.rs", fhir_base=f"{url}/fhir")
    launch = httpx.post(f"{url}/viewer/launch-context", data={"patient": "demo-p4"},
                        headers={"Authorization": f"Bearer {token.token}"}).json()
    browser.get(launch["url"])
    _sign_in(browser, "dr-tone", dr)
    _wait(browser, lambda d: d.current_url.endswith("/viewer/patient/demo-p4"))
    assert browser.find_element(By.ID, "patient-kanji").text == "髙橋 美咲"
    _sign_out(browser)

    # An emergency physician of a facility the patient excluded breaks the glass.
    browser.get(f"{url}/viewer/patient/demo-p1")
    _sign_in(browser, "dr-er", er)
    _wait(browser, ec.presence_of_element_located((By.ID, "glass-link"))).click()
    _wait(browser, ec.presence_of_element_located((By.ID, "reason"))).send_keys("救急搬送、意識障害")
    browser.find_element(By.ID, "declare").click()
    banner = _wait(browser, ec.presence_of_element_located((By.ID, "glass-banner")))
    assert "緊急時アクセス中" in banner.text
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "ペニシリン系抗菌薬" in body and "2型糖尿病" in body
    assert "ロキソプロフェン" not in body  # stopped: outside the emergency dataset
