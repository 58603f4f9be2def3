"""The console walked as a person would (fifteenth session): what blocked or misled a user
on the seeds' procedures, each in headless Chromium against an enforcing server.

- The key/value editor keeps numbers, booleans and null as JSON (a port stays 5432).
- Dates say they are UTC; "Last retrieved" is a day, as AWS records it.
- Buttons and column headings keep their words at a phone's width and beside long names.
- A user without kms:ListKeys/ListAliases can still choose a key, by typing it.
- The rotation schedule is shown as written (rate(30 days)), not as JSON.
- Replication: replicate to a Region, see its status, remove it, promote a replica.
"""

from __future__ import annotations

import json
import re

import pytest
from selenium.webdriver.common.by import By

from conftest import REGION
from test_console import Browser, ConsoleServer

ROTATOR = "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    srv = ConsoleServer(tmp_path_factory.mktemp("console15"))
    srv.store = "console15"
    yield srv
    srv.server.stop()


@pytest.fixture(scope="module")
def browser(console):
    b = Browser(console.url, console.store)
    b.sign_in(console.admin_key)
    yield b
    b.close()


def detail(browser: Browser, term: str) -> str:
    """The text of the details list's entry `term` (a <dt>) on the page shown."""
    found = browser.driver.find_elements(By.XPATH, f"//dt[normalize-space()='{term}']/following-sibling::dd[1]")
    assert found, f"no {term!r} on the page:\n{browser.text()}"
    return found[0].text


def text_lines(browser: Browser, element) -> int:
    """How many lines the text of `element` is laid out on."""
    return browser.driver.execute_script(
        "const r = document.createRange(); r.selectNodeContents(arguments[0]);"
        "return new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top))).size;",
        element)


def test_key_value_editor_keeps_numbers_booleans_and_null(console, browser):
    admin = console.admin()
    name = "typed/db"
    admin.create_secret(Name=name, SecretString=json.dumps(
        {"username": "svc", "port": 5432, "ssl": True, "ratio": 0.5, "extra": None, "pin": "0042"}))
    browser.open_secret(name)
    browser.click("Retrieve secret value")
    browser.click("Edit")
    browser.fill(f"Value {browser.row_of_key('username')}", "svc2")
    # A post-back (Add row) keeps what each row's value is.
    browser.click("Add row")
    browser.fill("Key 7", "note")
    browser.fill("Value 7", "12")
    browser.shot("typed-editor")
    browser.click("Save")
    assert "The secret value was saved as a new version." in browser.text()
    saved = json.loads(admin.get_secret_value(SecretId=name)["SecretString"])
    # Untouched numbers, booleans and null stay what they were; strings stay strings,
    # even when they look like numbers; a new row is a string, as typed.
    assert saved == {"username": "svc2", "port": 5432, "ssl": True, "ratio": 0.5, "extra": None,
                     "pin": "0042", "note": "12"}
    # A number edited into another number stays a number; edited into words, a string.
    browser.click("Retrieve secret value")
    browser.click("Edit")
    browser.fill(f"Value {browser.row_of_key('port')}", "5433")
    browser.fill(f"Value {browser.row_of_key('ssl')}", "sometimes")
    browser.click("Save")
    saved = json.loads(admin.get_secret_value(SecretId=name)["SecretString"])
    assert saved["port"] == 5433 and saved["ssl"] == "sometimes"


def test_dates_say_utc_and_last_retrieved_is_a_day(console, browser):
    console.admin().create_secret(Name="dated/one", SecretString="v")
    browser.open_secret("dated/one")
    browser.click("Retrieve secret value")
    browser.shot("dates")
    for term in ["Created on", "Last changed"]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", detail(browser, term)), detail(browser, term)
    # AWS keeps LastAccessedDate to the day: a time of midnight would be made up.
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", detail(browser, "Last retrieved")), detail(browser, "Last retrieved")
    machine = browser.driver.find_elements(By.XPATH, "//dt[normalize-space()='Created on']/following-sibling::dd[1]/time")
    assert machine and re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", machine[0].get_attribute("datetime"))


def test_buttons_and_headings_keep_their_words(console, browser):
    admin = console.admin()
    long_name = "wide/" + "a-rather-long-segment-" * 18
    admin.create_secret(Name=long_name, SecretString="v", Description="with a long name")
    admin.create_secret(Name="narrow/kv", SecretString=json.dumps({"user": "u", "password": "p"}))
    browser.open("/console/secrets?filter=wide")
    browser.shot("long-name-list")
    for th in browser.driver.find_elements(By.CSS_SELECTOR, "thead th"):
        # Wrapped between words if need be, never inside one.
        assert text_lines(browser, th) <= len(th.text.split()), th.text
    phone = Browser(console.url, console.store + "-phone", width=390, height=844)
    try:
        phone.sign_in(console.admin_key)
        phone.open_secret("narrow/kv")
        phone.click("Retrieve secret value")
        phone.click("Edit")
        phone.shot("phone-editor")
        buttons = [b for b in phone.driver.find_elements(By.TAG_NAME, "button") if b.is_displayed()]
        assert buttons
        for button in buttons:
            assert text_lines(phone, button) == 1, button.text
    finally:
        phone.close()


def test_encryption_key_can_be_typed_without_kms_list_permissions(console):
    admin = console.admin()
    kms = console.client(console.admin_key, service="kms")
    key_arn = kms.create_key(Description="typed key")["KeyMetadata"]["Arn"]
    admin.create_secret(Name="keyed/typed", SecretString="v")
    user = console.user("no-kms-list", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
         "Resource": "*"}]})
    b = Browser(console.url, console.store + "-nokmslist")
    try:
        b.sign_in(user)
        b.open_secret("keyed/typed")
        b.click("Actions")
        b.click("Edit encryption key")
        b.shot("typed-key-form")
        # The page says why there is no list, and asks for the key instead.
        assert "kms:ListAliases" in b.text()
        b.fill("Encryption key (key ID, key ARN or alias)", key_arn)
        b.click("Save")
        assert "The encryption key was saved." in b.text(), b.text()
        assert admin.describe_secret(SecretId="keyed/typed")["KmsKeyId"] == key_arn
        # Storing a new secret works the same way.
        b.open("/console/secrets/new")
        b.fill("Secret name", "keyed/created")
        b.fill("Key 1", "k")
        b.fill("Value 1", "v")
        b.fill("Encryption key (key ID, key ARN or alias)", key_arn)
        b.click("Store")
        assert b.h1() == "keyed/created", b.text()
        assert admin.describe_secret(SecretId="keyed/created")["KmsKeyId"] == key_arn
    finally:
        b.close()


def test_rotation_schedule_is_shown_as_written(console, browser):
    admin = console.admin()
    admin.create_secret(Name="rotated/shown", SecretString=json.dumps({"username": "u", "password": "p"}))
    admin.rotate_secret(SecretId="rotated/shown", RotationLambdaARN=ROTATOR, RotateImmediately=False,
                        RotationRules={"ScheduleExpression": "rate(30 days)", "Duration": "4h"})
    browser.open_secret("rotated/shown")
    browser.shot("rotation-shown")
    assert detail(browser, "Rotation schedule") == "rate(30 days)"
    assert detail(browser, "Window duration") == "4h"
    admin.create_secret(Name="rotated/days", SecretString=json.dumps({"username": "u", "password": "p"}))
    admin.rotate_secret(SecretId="rotated/days", RotationLambdaARN=ROTATOR, RotateImmediately=False,
                        RotationRules={"AutomaticallyAfterDays": 10})
    browser.open_secret("rotated/days")
    assert detail(browser, "Rotation schedule") == "rate(10 days)"


def test_replicate_to_a_region_remove_and_promote(console, browser):
    admin = console.admin()
    name = "replicated/app"
    admin.create_secret(Name=name, SecretString=json.dumps({"user": "u", "password": "p"}))
    browser.open_secret(name)
    assert "This secret is not replicated." in browser.text()
    browser.click("Replicate secret")
    browser.fill("AWS Region", "eu-west-1")
    browser.shot("replicate-form")
    browser.click("Replicate")
    assert "Replication to the Region was started." in browser.text(), browser.text()
    described = admin.describe_secret(SecretId=name)
    assert [r["Region"] for r in described["ReplicationStatus"]] == ["eu-west-1"]
    assert detail(browser, "Primary Region") == REGION
    row = browser.driver.find_element(By.CSS_SELECTOR, "table.replicas tbody tr")
    assert "eu-west-1" in row.text and described["ReplicationStatus"][0]["Status"] in row.text
    browser.shot("replicated")
    europe = console.client(console.admin_key, region="eu-west-1")
    assert json.loads(europe.get_secret_value(SecretId=name)["SecretString"]) == {"user": "u", "password": "p"}
    # The secret's own Region is AWS's error in the form, and nothing changes.
    browser.click("Replicate secret")
    browser.fill("AWS Region", REGION)
    browser.click("Replicate")
    assert "InvalidParameterException" in browser.text() and "Invalid replica region." in browser.text()
    assert browser.field("AWS Region").get_attribute("value") == REGION
    assert [r["Region"] for r in admin.describe_secret(SecretId=name)["ReplicationStatus"]] == ["eu-west-1"]
    # Remove the replica.
    browser.open_secret(name)
    browser.click("Remove replica eu-west-1")
    assert "The replica was removed." in browser.text(), browser.text()
    assert not admin.describe_secret(SecretId=name).get("ReplicationStatus")
    # Promote: a replica, seen from its own Region, becomes a standalone secret.
    admin.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": "eu-west-1"}])
    eu = Browser(console.url, console.store + "-eu")
    try:
        eu.sign_in(console.admin_key, region="eu-west-1")
        eu.open_secret(name)
        assert detail(eu, "Primary Region") == REGION
        eu.click("Promote to standalone secret")
        assert "The replica is now a standalone secret." in eu.text(), eu.text()
        assert "PrimaryRegion" not in europe.describe_secret(SecretId=name)
    finally:
        eu.close()


def test_a_secret_scheduled_for_deletion_says_so_without_errors(console, browser):
    console.admin().create_secret(Name="gone/banner", SecretString="v")
    browser.open_secret("gone/banner")
    browser.click("Actions")
    browser.click("Delete secret")
    browser.fill("Waiting period (days, 7 to 30)", "7")
    browser.click("Schedule deletion")
    browser.shot("deleted-banner")
    # The state, at the top, with its date and the way back; no section answers with an
    # error for what a secret scheduled for deletion cannot do.
    banner = browser.driver.find_element(By.CSS_SELECTOR, "main .warning")
    assert re.search(r"scheduled for deletion on \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", banner.text), banner.text
    assert banner.find_elements(By.XPATH, ".//button[normalize-space()='Restore secret']")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main .error") == [], browser.text()
    assert not browser.driver.find_elements(By.XPATH, "//button[normalize-space()='Retrieve secret value']")
    browser.click("Restore secret")
    assert "The secret was restored." in browser.text()
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "main .warning")


def test_delete_form_keeps_the_waiting_period_after_a_refusal(console, browser):
    admin = console.admin()
    admin.create_secret(Name="gone/replicated", SecretString="v")
    admin.replicate_secret_to_regions(SecretId="gone/replicated", AddReplicaRegions=[{"Region": "eu-west-1"}])
    browser.open("/console/secret/delete?id=gone%2Freplicated")
    browser.fill("Waiting period (days, 7 to 30)", "9")
    browser.click("Schedule deletion")
    assert "still has replica regions" in browser.text(), browser.text()
    assert browser.field("Waiting period (days, 7 to 30)").get_attribute("value") == "9"


def test_event_names_keep_their_words(console, browser):
    console.admin().create_secret(Name="audited/one", SecretString="v")
    browser.open_secret("audited/one")
    browser.click("Audit events for this secret")
    cells = browser.driver.find_elements(By.CSS_SELECTOR, "td.event-name")
    assert cells
    for cell in cells:
        assert text_lines(browser, cell) == 1, cell.text


def test_key_value_editor_refuses_to_drop_rows_silently(console, browser):
    """A duplicate key, or a value typed without a key, used to vanish on Save; now the
    editor says so, keeps the rows as typed, and stores nothing."""
    admin = console.admin()
    name = "kv/guarded"
    admin.create_secret(Name=name, SecretString=json.dumps({"user": "u", "password": "p"}))
    before = admin.get_secret_value(SecretId=name)["VersionId"]
    browser.open_secret(name)
    browser.click("Retrieve secret value")
    browser.click("Edit")
    browser.click("Add row")
    browser.fill("Key 3", "password")
    browser.fill("Value 3", "second password")
    browser.click("Save")
    browser.shot("duplicate-key")
    assert "The key password appears more than once" in browser.text(), browser.text()
    assert browser.field("Value 3").get_attribute("value") == "second password"
    browser.fill("Key 3", "")
    browser.click("Save")
    assert "Row 3 has a value but no key" in browser.text(), browser.text()
    assert admin.get_secret_value(SecretId=name)["VersionId"] == before
    # Creating a secret is guarded the same way.
    browser.open("/console/secrets/new")
    browser.fill("Secret name", "kv/not-created")
    browser.fill("Value 1", "orphan value")
    browser.click("Store")
    assert "Row 1 has a value but no key" in browser.text(), browser.text()
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.describe_secret(SecretId="kv/not-created")


def test_list_pages_lead_back_to_the_first(console, browser):
    admin = console.admin()
    for i in range(21):
        admin.create_secret(Name=f"paged15/s{i:02d}", SecretString="v")
    browser.open("/console/secrets?filter=paged15")
    browser.click("Next page")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 1
    browser.click("First page")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 20
    assert browser.field("Filter by name, description or tag").get_attribute("value") == "paged15"


def test_rotate_now_and_empty_filter_say_what_happened(console, browser):
    admin = console.admin()
    name = "rotated/now"
    admin.create_secret(Name=name, SecretString=json.dumps({"username": "u", "password": "p"}))
    admin.rotate_secret(SecretId=name, RotationLambdaARN=ROTATOR, RotateImmediately=False,
                        RotationRules={"ScheduleExpression": "rate(30 days)"})
    browser.open_secret(name)
    browser.click("Edit rotation")
    browser.click("Rotate secret immediately")
    # Nothing was configured: the notice says a rotation began, not that settings were saved.
    assert "A rotation of the secret was started." in browser.text(), browser.text()
    assert "The rotation configuration was saved." not in browser.text()
    browser.open("/console/secrets?filter=no-such-secret-anywhere")
    assert "No secrets match the filter." in browser.text(), browser.text()


def test_switching_to_plaintext_keeps_a_duplicate_key_row(console, browser):
    console.admin().create_secret(Name="kv/switch", SecretString=json.dumps({"user": "u"}))
    browser.open_secret("kv/switch")
    browser.click("Retrieve secret value")
    browser.click("Edit")
    browser.click("Add row")
    browser.fill("Key 2", "user")
    browser.fill("Value 2", "second")
    browser.click("Plaintext")
    assert "The key user appears more than once" in browser.text(), browser.text()
    assert browser.field("Value 2").get_attribute("value") == "second"


def test_a_refused_rotation_form_offers_only_what_applies(console, browser):
    admin = console.admin()
    admin.create_secret(Name="rotated/refused", SecretString=json.dumps({"username": "u", "password": "p"}))
    browser.open_secret("rotated/refused")
    browser.click("Edit rotation")
    browser.fill("Rotation function ARN", ROTATOR)
    browser.fill("Rotation schedule (rate(N days), cron(...) or a number of days)", "whenever")
    browser.click("Save")
    assert "InvalidParameterException" in browser.text() or "ValidationException" in browser.text(), browser.text()
    # Rotation is still off: there is nothing to disable.
    assert admin.describe_secret(SecretId="rotated/refused").get("RotationEnabled") in (None, False)
    assert not browser.driver.find_elements(By.XPATH, "//button[normalize-space()='Disable rotation']")
    assert browser.field("Rotation schedule (rate(N days), cron(...) or a number of days)").get_attribute("value") == "whenever"
