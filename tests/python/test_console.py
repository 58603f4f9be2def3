"""The web console (issue 15) in a real headless Chromium, on SQLite and on PostgreSQL.

Each test follows a seeds' console procedure by its visible labels (Retrieve secret value,
Edit, Save, Actions, Edit description, Edit encryption key, ...), then checks the result
through boto3 or the AWS CLI as an API client sees it. Every step leaves a screenshot in
``tests/python/artifacts/console/<store>/`` (gitignored).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REGION, coffer_bin, start_server
from test_auth import PROFILE, Secured

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# The README's two screenshots are refreshed only on request, so a test run never
# changes a tracked file: COFFER_UPDATE_DOCS_IMAGES=1.
UPDATE_DOCS_IMAGES = os.environ.get("COFFER_UPDATE_DOCS_IMAGES") == "1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not browser or not Path(driver).exists():
        pytest.fail("the console tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return browser, driver


class Browser:
    """A headless Chromium with a fresh profile, driven by the console's visible labels."""

    def __init__(self, base_url: str, store: str, width: int = 1280, height: int = 900):
        browser, driver = chromium_paths()
        self.profile = tempfile.mkdtemp(prefix="coffer-console-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        # The driver is Debian's: Selenium must not look for (or download) one of its own.
        self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        self.driver.implicitly_wait(0)
        self.base = base_url
        self.shots = ARTIFACTS / store
        self.shots.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def control(self, text: str):
        """The button, link or menu summary whose visible text (or accessible name) is `text`."""
        xpath = (
            f"//*[self::button or self::a or self::summary][normalize-space()={xpath_literal(text)}"
            f" or @aria-label={xpath_literal(text)}][not(@aria-hidden='true')]"
        )
        found = [e for e in self.driver.find_elements(By.XPATH, xpath) if e.is_displayed()]
        assert found, f"no visible control labelled {text!r} on {self.driver.current_url}:\n{self.text()}"
        return found[0]

    def click(self, text: str) -> None:
        """Clicks a control; a button or link loads a new page, which is awaited."""
        element = self.control(text)
        if element.tag_name == "summary":
            element.click()
            return
        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        wait_for_new_page(self.driver, old)

    def field(self, label: str):
        """The input a <label> with exactly this text names (labels tie every input)."""
        labels = self.driver.find_elements(By.XPATH, f"//label[normalize-space()={xpath_literal(label)}]")
        assert labels, f"no label {label!r} on {self.driver.current_url}"
        return self.driver.find_element(By.ID, labels[0].get_attribute("for"))

    def fill(self, label: str, value: str) -> None:
        element = self.field(label)
        element.clear()
        element.send_keys(value)

    def row_of_key(self, key: str) -> int:
        """The editor row number (1-based) whose key field holds `key`."""
        i = 1
        while self.driver.find_elements(By.XPATH, f"//label[normalize-space()='Key {i}']"):
            if self.field(f"Key {i}").get_attribute("value") == key:
                return i
            i += 1
        raise AssertionError(f"no row with key {key!r}")

    def choose(self, label: str, option_containing: str) -> None:
        select = Select(self.field(label))
        for option in select.options:
            if option_containing in option.text or option_containing in option.get_attribute("value"):
                select.select_by_value(option.get_attribute("value"))
                return
        raise AssertionError(f"no option with {option_containing!r} in {label!r}")

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def h1(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def sign_in(self, key: tuple[str, str], region: str = REGION) -> None:
        self.open("/console")
        assert self.h1() == "Sign in"
        self.fill("Access key ID", key[0])
        self.fill("Secret access key", key[1])
        self.fill("Region", region)
        self.shot("sign-in")
        self.click("Sign in")
        assert self.h1() == "Secrets", self.text()

    def open_secret(self, name: str) -> None:
        """Seeds step 1-2: open the console and choose the secret's name in the list."""
        self.open("/console/secrets")
        self.fill("Filter by name, description or tag", name)
        self.click("Search")
        self.click(name)
        assert self.h1() == name, self.text()


def wait_for_new_page(driver, old) -> None:
    """Waits until `old` (the previous page's root) is gone and the new page has loaded."""

    def gone(_):
        try:
            old.tag_name
            return False
        except WebDriverException:
            # Stale, or (Chromium, mid-navigation) "does not belong to the document".
            return True

    WebDriverWait(driver, 20).until(gone)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def xpath_literal(s: str) -> str:
    if "'" not in s:
        return f"'{s}'"
    return 'concat("' + s.replace('"', "") + '")'


class ConsoleServer(Secured):
    """An enforcing server (admin credentials file) on SQLite or PostgreSQL."""

    def __init__(self, data_dir: Path, store_url: str | None = None, extra: list[str] | None = None):
        self.data_dir = data_dir
        args = ["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *(extra or [])]
        if store_url:
            args += ["--store", store_url]
        self.server = start_server(args)
        self.url = self.server.url
        self.credentials_file = data_dir / "admin-credentials"
        parsed = configparser.ConfigParser()
        parsed.read(self.credentials_file)
        self.admin_key = (parsed[PROFILE]["aws_access_key_id"], parsed[PROFILE]["aws_secret_access_key"])

    def cli(self, *args: str) -> dict:
        """The AWS CLI as the administrator."""
        aws = str(Path(os.sys.executable).parent / "aws")
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.admin_key[0],
            AWS_SECRET_ACCESS_KEY=self.admin_key[1],
            AWS_DEFAULT_REGION=REGION,
            AWS_PAGER="",
        )
        env.pop("AWS_PROFILE", None)
        done = subprocess.run(
            [aws, "--endpoint-url", self.url, "--output", "json", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    if request.param == "sqlite":
        srv = ConsoleServer(tmp_path_factory.mktemp("console"))
        srv.store = "sqlite"
        yield srv
        srv.server.stop()
        return
    from test_backup_restore import Postgres

    postgres = Postgres()
    url = postgres.create_database()
    previous = os.environ.get("COFFER_STORE")
    os.environ["COFFER_STORE"] = url
    try:
        srv = ConsoleServer(tmp_path_factory.mktemp("console-pg"), store_url=url)
        srv.store = "postgres"
        yield srv
        srv.server.stop()
    finally:
        if previous is None:
            os.environ.pop("COFFER_STORE", None)
        else:
            os.environ["COFFER_STORE"] = previous
        postgres.stop()


@pytest.fixture(scope="module")
def browser(console):
    b = Browser(console.url, console.store)
    b.sign_in(console.admin_key)
    yield b
    b.close()


def stages(client, name: str) -> dict[str, list[str]]:
    return client.describe_secret(SecretId=name)["VersionIdsToStages"]


def holder(client, name: str, label: str) -> str:
    return next(v for v, labels in stages(client, name).items() if label in labels)


STORY_SECRET = "production/MyAwesomeAppSecret"


def story_secret(console) -> str:
    """The secret the seeds' procedures walk through. The first test stores it through the
    console; a test run alone (`-k`) finds it missing, so it is stored here as that test
    would have left it (the same value, description and tag)."""
    admin = console.admin()
    try:
        admin.describe_secret(SecretId=STORY_SECRET)
    except admin.exceptions.ResourceNotFoundException:
        admin.create_secret(
            Name=STORY_SECRET,
            Description="The app's database login",
            SecretString=json.dumps({"username": "anika", "password": "first password"}),
            Tags=[{"Key": "team", "Value": "payments"}],
        )
    return STORY_SECRET


# ------------------------------------------------------------------ the procedures


def test_create_secret_with_key_value_pairs_and_tags(console, browser):
    browser.open("/console/secrets")
    browser.click("Store a new secret")
    browser.fill("Secret name", "production/MyAwesomeAppSecret")
    browser.fill("Description", "The app's database login")
    browser.fill("Key 1", "username")
    browser.fill("Value 1", "anika")
    browser.click("Add row")
    browser.fill("Key 2", "password")
    browser.fill("Value 2", "first password")
    browser.fill("Tag key 1", "team")
    browser.fill("Tag value 1", "payments")
    browser.shot("create-secret")
    browser.click("Store")
    assert browser.h1() == "production/MyAwesomeAppSecret", browser.text()
    assert "The secret was stored." in browser.text()
    admin = console.admin()
    value = admin.get_secret_value(SecretId="production/MyAwesomeAppSecret")
    assert json.loads(value["SecretString"]) == {"username": "anika", "password": "first password"}
    described = admin.describe_secret(SecretId="production/MyAwesomeAppSecret")
    assert described["Description"] == "The app's database login"
    assert described["Tags"] == [{"Key": "team", "Value": "payments"}]


def test_modify_the_secret_value_as_the_seeds_say(console, browser):
    admin = console.admin()
    name = "production/MyAwesomeAppSecret"
    before = holder(admin, name, "AWSCURRENT")
    # 1-2. Open the console; choose the secret in the list.
    browser.open_secret(name)
    browser.shot("secret-details")
    # 3. In the Secret value section, choose Retrieve secret value.
    section = browser.driver.find_element(By.ID, "value-h").text
    assert section == "Secret value"
    browser.click("Retrieve secret value")
    assert "first password" in browser.text()
    assert "first password" not in browser.driver.current_url
    browser.shot("secret-value")
    # 4. With the secret value displayed, choose Edit.
    browser.click("Edit")
    # 5. Update the values, add and remove rows, then choose Save.
    browser.fill(f"Value {browser.row_of_key('password')}", "a different password")
    browser.click("Add row")
    browser.fill("Key 3", "scratch")
    browser.fill("Value 3", "to be removed")
    assert browser.field(f"Value {browser.row_of_key('password')}").get_attribute("value") == "a different password"
    browser.click("Add row")
    browser.fill("Key 4", "host")
    browser.fill("Value 4", "db.example.internal")
    browser.click("Remove row 3")
    shot = browser.shot("key-value-editor")
    if console.store == "sqlite" and UPDATE_DOCS_IMAGES:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS_IMAGES / "console-key-value-editor.png")
    browser.click("Save")
    assert "The secret value was saved as a new version." in browser.text()
    after = holder(admin, name, "AWSCURRENT")
    assert after != before
    assert holder(admin, name, "AWSPREVIOUS") == before
    assert json.loads(admin.get_secret_value(SecretId=name)["SecretString"]) == {
        "username": "anika", "password": "a different password", "host": "db.example.internal"}
    previous = admin.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"]
    assert json.loads(previous)["password"] == "first password"
    # The versions table shows the labels where the API says they are.
    text = browser.text()
    assert "AWSCURRENT" in text and "AWSPREVIOUS" in text


def test_plaintext_editor(console, browser):
    admin = console.admin()
    admin.create_secret(Name="plain/token", SecretString="not json at all")
    browser.open_secret("plain/token")
    browser.click("Retrieve secret value")
    assert browser.driver.find_element(By.CSS_SELECTOR, "pre.plaintext").text == "not json at all"
    browser.click("Edit")
    browser.fill("Plaintext", "a new token")
    browser.shot("plaintext-editor")
    browser.click("Save")
    assert admin.get_secret_value(SecretId="plain/token")["SecretString"] == "a new token"
    assert admin.get_secret_value(SecretId="plain/token", VersionStage="AWSPREVIOUS")["SecretString"] == "not json at all"
    # Switching a key/value secret to the plaintext editor keeps its JSON.
    browser.open_secret("production/MyAwesomeAppSecret")
    browser.click("Retrieve secret value")
    browser.click("Edit")
    browser.click("Plaintext")
    assert json.loads(browser.field("Plaintext").get_attribute("value"))["username"] == "anika"


def test_binary_value_is_shown_as_base64(console, browser):
    console.admin().create_secret(Name="bin/blob", SecretBinary=b"\x00\x01binary\xff")
    browser.open_secret("bin/blob")
    browser.click("Retrieve secret value")
    assert browser.driver.find_element(By.CSS_SELECTOR, "pre.binary").text == "AAFiaW5hcnn/"


def test_edit_description_through_actions(console, browser):
    name = story_secret(console)
    browser.open_secret(name)
    browser.click("Actions")
    browser.shot("actions-menu")
    browser.click("Edit description")
    browser.fill("Description", "This is the description I want to attach to the secret.")
    browser.click("Save")
    assert "The description was saved." in browser.text()
    assert console.admin().describe_secret(SecretId=name)["Description"] == (
        "This is the description I want to attach to the secret.")


def test_rotation_configuration_is_edited_in_the_console(console, browser):
    """Rotation configuration, shown and editable (issue 14, item 6): turned on with a
    built-in rotator, rotated, then disabled; each checked as an API client sees it."""
    admin = console.admin()
    name = "rotated/by-console"
    admin.create_secret(Name=name, SecretString=json.dumps({"username": "svc", "password": "first"}))
    before = admin.get_secret_value(SecretId=name)["VersionId"]
    browser.open_secret(name)
    browser.click("Edit rotation")
    browser.fill("Rotation function ARN",
                 "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password")
    browser.fill("Rotation schedule (rate(N days), cron(...) or a number of days)", "rate(30 days)")
    browser.fill("Window duration (for example 4h; optional)", "4h")
    browser.shot("rotation-editor")
    browser.click("Save")
    assert "The rotation configuration was saved." in browser.text()
    described = admin.describe_secret(SecretId=name)
    assert described["RotationEnabled"] is True
    assert described["RotationRules"]["ScheduleExpression"] == "rate(30 days)"
    assert described["RotationRules"]["Duration"] == "4h"
    deadline = time.time() + 30
    while admin.get_secret_value(SecretId=name)["VersionId"] == before:
        assert time.time() < deadline, "the rotation did not complete"
        time.sleep(0.2)
    rotated = json.loads(admin.get_secret_value(SecretId=name)["SecretString"])
    assert rotated["username"] == "svc" and rotated["password"] != "first"
    assert admin.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["VersionId"] == before
    browser.open_secret(name)
    assert "Enabled" in browser.text()
    browser.click("Edit rotation")
    browser.click("Disable rotation")
    assert "The rotation configuration was saved." in browser.text()
    assert admin.describe_secret(SecretId=name)["RotationEnabled"] is False


def test_kms_keys_and_edit_encryption_key(console, browser):
    kms = console.client(console.admin_key, service="kms")
    browser.open("/console/keys")
    browser.fill("Key description", "console key")
    browser.click("Create key")
    assert "The key was created." in browser.text()
    created = [k for k in kms.list_keys()["Keys"]
               if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"].get("Description") == "console key"]
    assert len(created) == 1
    key_id, key_arn = created[0]["KeyId"], created[0]["KeyArn"]
    browser.shot("kms-keys")
    # Disable, then enable again, by the row's buttons.
    browser.click(f"Disable key {key_id}")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    browser.click(f"Enable key {key_id}")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled", browser.text()
    # Edit encryption key, as the seeds say.
    name = story_secret(console)
    admin = console.admin()
    value = admin.get_secret_value(SecretId=name)["SecretString"]
    browser.open_secret(name)
    browser.click("Actions")
    browser.click("Edit encryption key")
    browser.choose("Encryption key", key_id)
    browser.shot("edit-encryption-key")
    browser.click("Save")
    assert "The encryption key was saved." in browser.text()
    assert admin.describe_secret(SecretId=name)["KmsKeyId"] == key_arn
    assert admin.get_secret_value(SecretId=name)["SecretString"] == value


def test_resource_policy_validate_block_public_attach_delete(console, browser):
    name = story_secret(console)
    admin = console.admin()
    browser.open_secret(name)
    browser.click("Edit permissions")
    public = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    browser.fill("Resource policy", json.dumps(public))
    browser.click("Validate")
    report = admin.validate_resource_policy(SecretId=name, ResourcePolicy=json.dumps(public))
    if report["PolicyValidationPassed"]:
        assert "Policy validation passed." in browser.text()
    else:
        assert "Policy validation failed." in browser.text()
        for finding in report["ValidationErrors"]:
            assert finding["ErrorMessage"] in browser.text()
    # BlockPublicPolicy is on by default: AWS's refusal shows in the page, nothing is stored.
    browser.click("Save")
    assert "PublicPolicyException" in browser.text()
    assert "ResourcePolicy" not in admin.get_resource_policy(SecretId=name)
    account = admin.describe_secret(SecretId=name)["ARN"].split(":")[4]
    scoped = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    browser.fill("Resource policy", json.dumps(scoped))
    browser.click("Validate")
    assert "Policy validation passed." in browser.text()
    browser.click("Save")
    assert "The resource policy was saved." in browser.text()
    assert json.loads(admin.get_resource_policy(SecretId=name)["ResourcePolicy"]) == scoped
    browser.shot("resource-policy")
    browser.click("Edit permissions")
    browser.click("Delete policy")
    assert "The resource policy was deleted." in browser.text()
    assert "ResourcePolicy" not in admin.get_resource_policy(SecretId=name)


def test_add_and_remove_tags(console, browser):
    name = story_secret(console)
    admin = console.admin()
    browser.open_secret(name)
    browser.click("Edit tags")
    browser.fill("Tag key", "env")
    browser.fill("Tag value", "prod")
    browser.click("Add tag")
    assert "The tags were saved." in browser.text()
    tags = {t["Key"]: t["Value"] for t in admin.describe_secret(SecretId=name)["Tags"]}
    assert tags == {"team": "payments", "env": "prod"}
    browser.shot("tags")
    browser.click("Remove tag team")
    tags = {t["Key"]: t["Value"] for t in admin.describe_secret(SecretId=name)["Tags"]}
    assert tags == {"env": "prod"}


def test_list_filters_and_paging(console, browser):
    admin = console.admin()
    for i in range(22):
        admin.create_secret(Name=f"page/s{i:02d}", SecretString="v", Description="paged one")
    browser.open("/console/secrets")
    browser.fill("Filter by name, description or tag", "paged one")
    browser.click("Search")
    first = browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(first) == 20
    browser.click("Next page")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    # By tag value.
    browser.fill("Filter by name, description or tag", "payments")
    browser.click("Search")
    assert [e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")] == []
    browser.fill("Filter by name, description or tag", "prod")
    browser.click("Search")
    names = [e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")]
    assert "production/MyAwesomeAppSecret" in names


def test_delete_with_recovery_window_and_restore(console, browser):
    admin = console.admin()
    admin.create_secret(Name="gone/soon", SecretString="bye")
    browser.open_secret("gone/soon")
    browser.click("Actions")
    browser.click("Delete secret")
    browser.fill("Waiting period (days, 7 to 30)", "7")
    browser.click("Schedule deletion")
    assert "The secret is scheduled for deletion." in browser.text()
    described = admin.describe_secret(SecretId="gone/soon")
    assert "DeletedDate" in described
    browser.open("/console/secrets")
    browser.fill("Filter by name, description or tag", "gone/soon")
    browser.click("Search")
    assert "No secrets match the filter." in browser.text()
    browser.driver.find_element(By.ID, "deleted").click()
    browser.click("Search")
    browser.click("gone/soon")
    browser.shot("deleted-secret")
    browser.click("Restore secret")
    assert "The secret was restored." in browser.text()
    assert "DeletedDate" not in admin.describe_secret(SecretId="gone/soon")


def test_audit_page_and_every_console_action_in_lookup_events(console, browser):
    name = "production/MyAwesomeAppSecret"
    browser.open_secret(name)
    browser.click("Audit events for this secret")
    names = {e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, "td.event-name")}
    browser.shot("audit")
    while browser.driver.find_elements(By.LINK_TEXT, "Older events"):
        browser.click("Older events")
        names |= {e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, "td.event-name")}
    assert {"CreateSecret", "PutSecretValue", "UpdateSecret", "TagResource", "UntagResource"} <= names
    # Every action above left its event, marked as a console call, found by the AWS CLI.
    found = console.cli("cloudtrail", "lookup-events", "--lookup-attributes",
                        f"AttributeKey=AccessKeyId,AttributeValue={console.admin_key[0]}")["Events"]
    by_console = set()
    for e in found:
        record = json.loads(e["CloudTrailEvent"])
        # Marked as CloudTrail marks console calls.
        if record.get("sessionCredentialFromConsole") == "true":
            assert record["userAgent"] == "AWS Internal"
            by_console.add(e["EventName"])
    expected = {
        "ListSecrets", "DescribeSecret", "CreateSecret", "GetSecretValue", "PutSecretValue",
        "UpdateSecret", "TagResource", "UntagResource", "GetResourcePolicy", "PutResourcePolicy",
        "DeleteResourcePolicy", "ValidateResourcePolicy", "DeleteSecret", "RestoreSecret",
        "ListKeys", "ListAliases", "DescribeKey", "CreateKey", "EnableKey", "DisableKey",
        "ListSecretVersionIds", "LookupEvents",
    }
    assert expected - by_console == set()


def test_layout_at_phone_width(console):
    phone = Browser(console.url, console.store + "-phone", width=390, height=844)
    try:
        phone.sign_in(console.admin_key)
        phone.open_secret("production/MyAwesomeAppSecret")
        width = phone.driver.execute_script("return document.documentElement.scrollWidth")
        viewport = phone.driver.execute_script("return window.innerWidth")
        assert width <= viewport, (width, viewport)
        phone.shot("phone-details")
    finally:
        phone.close()


def test_keyboard_navigation_reaches_the_actions(console, browser):
    from selenium.webdriver.common.keys import Keys

    browser.open_secret("production/MyAwesomeAppSecret")
    body = browser.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    reached = []
    for _ in range(40):
        active = browser.driver.switch_to.active_element
        reached.append(active.text.strip())
        if active.text.strip() == "Actions":
            break
        active.send_keys(Keys.TAB)
    assert reached[-1] == "Actions", reached
    browser.driver.switch_to.active_element.send_keys(Keys.ENTER)
    link = browser.control("Edit description")
    old = browser.driver.find_element(By.TAG_NAME, "html")
    link.send_keys(Keys.ENTER)
    wait_for_new_page(browser.driver, old)
    assert browser.h1().startswith("Edit description")


def test_details_screenshot_for_the_readme(console, browser):
    browser.driver.set_window_size(1280, 1100)
    browser.open_secret("production/MyAwesomeAppSecret")
    shot = browser.shot("secret-details-final")
    if console.store == "sqlite" and UPDATE_DOCS_IMAGES:
        shutil.copy(shot, DOCS_IMAGES / "console-secret-details.png")
    browser.driver.set_window_size(1280, 900)


def test_every_input_has_a_label(console, browser):
    """Labels on every input (issue 15, item 5), on the pages that have forms."""
    pages = ["/console/secrets", "/console/secrets/new", "/console/keys",
             "/console/secret/description?id=production%2FMyAwesomeAppSecret",
             "/console/secret/key?id=production%2FMyAwesomeAppSecret",
             "/console/secret/policy?id=production%2FMyAwesomeAppSecret",
             "/console/secret/tags?id=production%2FMyAwesomeAppSecret",
             "/console/secret/delete?id=production%2FMyAwesomeAppSecret"]
    for path in pages:
        browser.open(path)
        for element in browser.driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
            if element.get_attribute("type") == "hidden":
                continue
            element_id = element.get_attribute("id")
            assert element_id, f"an input without an id on {path}"
            labels = browser.driver.find_elements(By.CSS_SELECTOR, f"label[for='{element_id}']")
            assert labels, f"input {element_id} on {path} has no label"
    browser.open("/console/secret?id=production%2FMyAwesomeAppSecret")
    browser.click("Retrieve secret value")
    browser.click("Edit")
    for element in browser.driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), textarea"):
        assert browser.driver.find_elements(By.CSS_SELECTOR, f"label[for='{element.get_attribute('id')}']")
