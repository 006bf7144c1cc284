"""The SMART login page in a real headless Chromium: a clinician opens the authorization
URL, reads the Japanese page, switches to English and back, signs in with password and
TOTP, and the browser lands on the app's redirect URI with an authorization code that the
token endpoint accepts. A screenshot check proves the Japanese text is drawn with real
glyphs (not the empty boxes of a missing font).

Chromium and chromedriver come from Debian (``scripts/test-setup.d/browser.sh``); without
them the test is skipped locally and fails under CI (``CI=true``).

Spec: https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from hie.api.app import create_app
from hie.audit.recorder import AuditRecorder
from hie.config import Settings
from tests.auth import helpers as h
from tests.support import LiveServer

CHROMIUM = Path(os.environ.get("HIE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("HIE_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1000,1000", "--force-device-scale-factor=1", "--lang=ja")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run under CI: {reason} (scripts/test-setup.d/browser.sh installs it)")
    pytest.skip(f"{reason}; run scripts/test-setup.d/browser.sh to install Chromium")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}")
    if not (CHROMEDRIVER.exists() and os.access(CHROMEDRIVER, os.X_OK)):
        _unavailable(f"chromedriver not found at {CHROMEDRIVER}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    profile = tmp_path / "chromium-profile"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def live(sqlite_node):
    node = sqlite_node
    saved = node.settings
    # Tokens name the FHIR base the browser used: let the node derive it from the request.
    node.settings = Settings(database_url=saved.database_url, data_dir=saved.data_dir, base_url=None,
                             pool_size=saved.pool_size, audit_system_use=saved.audit_system_use)
    recorder = AuditRecorder(node, interval=None)
    try:
        with LiveServer(create_app(node, audit=recorder)) as srv:
            yield srv.url, node
    finally:
        recorder.flush()
        node.settings = saved


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _text_shot(driver, text: str) -> bytes:
    """A screenshot of ``text`` drawn in the page's own font, in a fixed-size box."""
    from selenium.webdriver.common.by import By

    driver.execute_script(
        "let e = document.getElementById('glyph-probe');"
        "if (!e) { e = document.createElement('div'); e.id = 'glyph-probe';"
        "  e.style.cssText = 'position:fixed;left:0;top:0;width:320px;height:60px;background:#fff;color:#000;"
        "font-size:40px;line-height:60px;white-space:nowrap;z-index:9999;font-family:inherit';"
        "  document.body.appendChild(e); }"
        "e.textContent = arguments[0];",
        text,
    )
    return driver.find_element(By.ID, "glyph-probe").screenshot_as_png


def test_clinician_signs_in_through_the_japanese_login_page_in_chromium(browser, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, node = live
    h.seed(node)
    dr = h.user(node)
    redirect = f"{url}/healthz"  # any page of ours: the browser only has to land there
    cid = h.app_client(node, redirect=redirect)
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(12)
    authorize = f"{url}/auth/authorize?" + urlencode({
        "response_type": "code", "client_id": cid, "redirect_uri": redirect, "state": state,
        "scope": "openid fhirUser launch/patient patient/*.rs user/Observation.rs", "aud": f"{url}/fhir",
        "code_challenge": challenge, "code_challenge_method": "S256",
    })

    browser.get(authorize)
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ja"
    assert browser.title == "地域医療連携ネットワーク ログイン"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=otp]").text == "確認コード（認証アプリの6桁）"
    (tmp_path / "login-ja.png").write_bytes(browser.get_screenshot_as_png())

    # Screenshot check: Japanese is drawn with glyphs. Without a Japanese font every
    # character falls back to the same empty box, so the title would look exactly like a
    # string of unassigned private-use characters of the same length.
    title = "地域医療連携"
    boxes = "\ue000\ue001\ue002\ue003\ue004\ue005"
    japanese, tofu = _text_shot(browser, title), _text_shot(browser, boxes)
    blank = _text_shot(browser, "")
    drawn, glyphs, stable = japanese != blank, japanese != tofu, _text_shot(browser, title) == japanese
    assert drawn, "the Japanese title was not drawn at all"
    assert glyphs, "Japanese text renders as empty boxes: no Japanese font (fonts-ipafont-gothic)"
    assert stable, "the same text rendered twice gave different screenshots"

    # English and back.
    browser.find_element(By.LINK_TEXT, "English").click()
    WebDriverWait(browser, 10).until(ec.title_is("Regional health network sign-in"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "button[value=allow]").text == "Sign in and allow"
    (tmp_path / "login-en.png").write_bytes(browser.get_screenshot_as_png())
    browser.find_element(By.LINK_TEXT, "日本語").click()
    WebDriverWait(browser, 10).until(ec.title_is("地域医療連携ネットワーク ログイン"))

    # Sign in on the Japanese form: password and the authenticator's code.
    browser.find_element(By.ID, "username").send_keys("dr-tanaka")
    browser.find_element(By.ID, "password").send_keys(dr.password)
    browser.find_element(By.ID, "otp").send_keys(h.totp_now(dr))
    browser.find_element(By.ID, "patient").send_keys("p1")
    button = browser.find_element(By.CSS_SELECTOR, "button[value=allow]")
    assert button.text == "ログインして許可"
    button.click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(redirect))

    landed = urlsplit(browser.current_url)
    query = parse_qs(landed.query)
    assert query["state"] == [state]
    code = query["code"][0]
    token = httpx.post(f"{url}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": cid,
        "code_verifier": verifier,
    }).json()
    assert token["token_type"] == "Bearer" and token["patient"] == "p1", token
    obs = httpx.get(f"{url}/fhir/Observation/obs-p1", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert obs.status_code == 200


def test_wrong_code_shows_the_japanese_error_in_chromium(browser, live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, node = live
    dr = h.user(node, username="dr-suzuki")
    redirect = f"{url}/healthz"
    cid = h.app_client(node, redirect=redirect)
    _verifier, challenge = _pkce()
    browser.get(f"{url}/auth/authorize?" + urlencode({
        "response_type": "code", "client_id": cid, "redirect_uri": redirect, "state": "s",
        "scope": "openid user/Observation.rs", "aud": f"{url}/fhir",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }))
    browser.find_element(By.ID, "username").send_keys("dr-suzuki")
    browser.find_element(By.ID, "password").send_keys(dr.password)
    browser.find_element(By.ID, "otp").send_keys("000000")
    browser.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    alert = WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "正しくありません" in alert.text
    assert not browser.current_url.startswith(redirect)
