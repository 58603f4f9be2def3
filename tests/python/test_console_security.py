"""The console as a browser-facing secrets service (issue 15, item 4).

CSRF refusal, session expiry and sign-out, access denied for a reader, the headers every page
carries (no-store, CSP, no framing), cookie flags, the sign-in rate limit, escaping of stored
HTML and script, --dev sign-in choosing account and region, and values never in a URL.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from selenium.webdriver.common.by import By

from conftest import REGION, make_client, start_server
from test_console import Browser, ConsoleServer

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HOSTILE = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    # A short idle limit, so expiry can be seen without waiting long.
    srv = ConsoleServer(tmp_path_factory.mktemp("console-sec"), extra=["--console-idle-timeout", "2"])
    srv.store = "security"
    yield srv
    srv.server.stop()


def http_sign_in(base: str, key: tuple[str, str]) -> tuple[requests.Session, str]:
    """Signs in with plain HTTP; answers the session and its CSRF token."""
    http = requests.Session()
    form = http.get(f"{base}/console/signin")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
    done = http.post(f"{base}/console/signin", allow_redirects=False, data={
        "csrf": token, "access_key_id": key[0], "secret_access_key": key[1], "region": REGION})
    assert done.status_code == 303, done.text
    cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie, cookie
    page = http.get(f"{base}/console/secrets")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    return http, csrf


def test_csrf_token_is_required_for_every_state_change(secured):
    admin = secured.admin()
    admin.create_secret(Name="csrf/target", SecretString="v", Description="before")
    http, csrf = http_sign_in(secured.url, secured.admin_key)
    for token in [None, "", "0" * 64]:
        data = {"id": "csrf/target", "description": "changed by a forged form"}
        if token is not None:
            data["csrf"] = token
        forged = http.post(f"{secured.url}/console/secret/description", data=data, allow_redirects=False)
        assert forged.status_code == 403
        assert "CSRF token" in forged.text
    assert admin.describe_secret(SecretId="csrf/target")["Description"] == "before"
    # The sign-in form is protected too (double submit): a post without its cookie is refused.
    refused = requests.post(f"{secured.url}/console/signin", data={
        "csrf": "x", "access_key_id": secured.admin_key[0], "secret_access_key": secured.admin_key[1],
        "region": REGION}, allow_redirects=False)
    assert refused.status_code == 403
    # With the session's token the same change goes through.
    ok = http.post(f"{secured.url}/console/secret/description", allow_redirects=False,
                   data={"id": "csrf/target", "description": "after", "csrf": csrf})
    assert ok.status_code == 303
    assert admin.describe_secret(SecretId="csrf/target")["Description"] == "after"


def test_every_page_is_no_store_under_a_strict_csp(secured):
    secured.admin().create_secret(Name="hdr/secret", SecretString='{"k":"shown value"}')
    http, csrf = http_sign_in(secured.url, secured.admin_key)
    pages = [
        http.get(f"{secured.url}/console/signin"),
        http.get(f"{secured.url}/console/secrets"),
        http.get(f"{secured.url}/console/secret", params={"id": "hdr/secret"}),
        http.post(f"{secured.url}/console/secret/value", data={"id": "hdr/secret", "csrf": csrf}),
        http.post(f"{secured.url}/console/secret/value/edit", data={"id": "hdr/secret", "csrf": csrf, "op": "start"}),
        http.get(f"{secured.url}/console/static/console.css"),
    ]
    assert "shown value" in pages[3].text
    for page in pages:
        assert page.headers["Cache-Control"] == "no-store", page.url
        assert page.headers["Content-Security-Policy"] == CSP
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in page.text


def test_session_expires_when_idle_and_ends_on_sign_out(secured):
    b = Browser(secured.url, "security")
    try:
        b.sign_in(secured.admin_key)
        time.sleep(3)  # past the 2-second idle limit the server was started with
        b.open("/console/secrets")
        assert b.h1() == "Sign in"
        assert "Your session has expired. Sign in again." in b.text()
        b.shot("session-expired")
        b.sign_in(secured.admin_key)
        b.click("Sign out")
        assert b.h1() == "Sign in"
        b.open("/console/secrets")
        assert b.h1() == "Sign in"
    finally:
        b.close()


def test_a_reader_without_permission_sees_access_denied(secured):
    admin = secured.admin()
    arn = admin.create_secret(Name="denied/value", SecretString="top secret")["ARN"]
    reader = secured.user("console-reader", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["secretsmanager:ListSecrets", "secretsmanager:DescribeSecret",
                                      "secretsmanager:GetResourcePolicy", "secretsmanager:ListSecretVersionIds"],
        "Resource": "*"}]})
    b = Browser(secured.url, "security")
    try:
        b.sign_in(reader)
        b.open_secret("denied/value")
        b.click("Retrieve secret value")
        text = b.text()
        assert "AccessDeniedException" in text
        assert (f"User: arn:aws:iam::000000000000:user/console-reader is not authorized to perform: "
                f"secretsmanager:GetSecretValue on resource: denied/value because no identity-based "
                f"policy allows the secretsmanager:GetSecretValue action") in text, text
        assert "top secret" not in b.driver.page_source
        b.shot("access-denied")
        # Nor can the reader change it.
        b.click("Actions")
        b.click("Edit description")
        b.fill("Description", "defaced")
        b.click("Save")
        assert "AccessDeniedException" in b.text()
        assert "Description" not in admin.describe_secret(SecretId=arn)
    finally:
        b.close()


def test_stored_html_and_script_are_shown_inert(secured):
    admin = secured.admin()
    name = "xss/holder"
    admin.create_secret(Name=name, Description=HOSTILE,
                        SecretString='{"' + HOSTILE.replace('"', "'") + '": "' + HOSTILE.replace('"', "'") + '"}',
                        Tags=[{"Key": "note", "Value": "<b>bold?</b>"}])
    admin.create_secret(Name="xss/plain", SecretString=HOSTILE)
    b = Browser(secured.url, "security")
    try:
        b.sign_in(secured.admin_key)
        b.open_secret(name)
        assert HOSTILE in b.text()
        assert "<b>bold?</b>" in b.text()
        b.click("Retrieve secret value")
        assert HOSTILE.replace('"', "'") in b.text()
        b.click("Edit")
        b.open_secret("xss/plain")
        b.click("Retrieve secret value")
        assert b.driver.find_element(By.CSS_SELECTOR, "pre.plaintext").text == HOSTILE
        b.shot("escaped")
        assert b.driver.find_elements(By.TAG_NAME, "script") == []
        assert b.driver.find_elements(By.CSS_SELECTOR, "img") == []
        assert b.driver.execute_script("return window.__owned === undefined")
    finally:
        b.close()


def test_values_never_travel_in_a_url(secured):
    admin = secured.admin()
    admin.create_secret(Name="url/check", SecretString='{"user":"u","password":"never-in-a-url"}')
    b = Browser(secured.url, "security")
    try:
        b.sign_in(secured.admin_key)
        b.open_secret("url/check")
        b.click("Retrieve secret value")
        assert "never-in-a-url" in b.text()
        assert "never-in-a-url" not in b.driver.current_url
        b.click("Edit")
        b.fill(f"Value {b.row_of_key('password')}", "also-never-in-a-url")
        b.click("Save")
        assert "also-never-in-a-url" not in b.driver.current_url
        hrefs = [a.get_attribute("href") or "" for a in b.driver.find_elements(By.TAG_NAME, "a")]
        assert not any("never-in-a-url" in h for h in hrefs)
        assert "never-in-a-url" not in secured.server.output()
    finally:
        b.close()


def test_sign_in_attempts_are_rate_limited(secured):
    http = requests.Session()
    statuses = []
    for _ in range(12):
        form = http.get(f"{secured.url}/console/signin")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        answer = http.post(f"{secured.url}/console/signin", allow_redirects=False, data={
            "csrf": token, "access_key_id": secured.admin_key[0], "secret_access_key": "wrong", "region": REGION})
        statuses.append(answer.status_code)
    assert 401 in statuses
    assert statuses[-1] == 429
    assert "Too many sign-in attempts" in answer.text


def test_dev_sign_in_picks_account_and_region(tmp_path):
    server = start_server(["serve", "--dev", "--listen", "127.0.0.1:0"])
    b = Browser(server.url, "dev")
    try:
        b.open("/console")
        assert "Access key ID" not in b.text()
        b.fill("Account ID", "111122223333")
        b.fill("Region", "eu-west-1")
        b.shot("dev-sign-in")
        b.click("Sign in")
        assert "arn:aws:iam::111122223333:root" in b.text()
        b.click("Store a new secret")
        b.fill("Secret name", "dev/created")
        b.click("Plaintext")
        b.fill("Plaintext", "hello")
        b.click("Store")
        assert b.h1() == "dev/created"
        client = make_client(server.url, region="eu-west-1", access_key="111122223333")
        assert client.get_secret_value(SecretId="dev/created")["SecretString"] == "hello"
        other_region = make_client(server.url, region="us-east-1", access_key="111122223333")
        assert other_region.list_secrets()["SecretList"] == []
    finally:
        b.close()
        server.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_session_cookie_is_secure_over_tls(tmp_path):
    from test_ops_tls import start_https

    server, base = start_https(["serve", "--dev", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                                "--tls-self-signed"])
    try:
        form = requests.get(f"{base}/console/signin", verify=False)
        assert "Secure" in form.headers["Set-Cookie"]
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        done = requests.post(f"{base}/console/signin", verify=False, allow_redirects=False,
                             cookies=form.cookies,
                             data={"csrf": token, "account": "000000000000", "region": REGION})
        assert done.status_code == 303
        assert "Secure" in done.headers["Set-Cookie"] and "HttpOnly" in done.headers["Set-Cookie"]
    finally:
        server.stop()
