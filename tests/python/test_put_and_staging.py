"""PutSecretValue, UpdateSecretVersionStage and ListSecretVersionIds: the staging rules of section 4."""

from datetime import datetime, timezone

from conftest import MSG_NOT_FOUND, expect_error, keys, stages, token


def put(sm, name, value, labels=None, tok=None):
    kwargs = {"SecretId": name, "SecretString": value}
    if labels is not None:
        kwargs["VersionStages"] = labels
    if tok is not None:
        kwargs["ClientRequestToken"] = tok
    return sm.put_secret_value(**kwargs)


def move_current(sm, name, from_id, to_id, label="AWSCURRENT"):
    resp = sm.update_secret_version_stage(
        SecretId=name, VersionStage=label, RemoveFromVersionId=from_id, MoveToVersionId=to_id
    )
    assert keys(resp) == {"ARN", "Name"}
    return resp


def listed(sm, name, **kwargs):
    """All ListSecretVersionIds entries, following NextToken."""
    out, next_token = [], None
    while True:
        args = dict(kwargs, SecretId=name)
        if next_token:
            args["NextToken"] = next_token
        page = sm.list_secret_version_ids(**args)
        out.extend(page["Versions"])
        next_token = page.get("NextToken")
        if not next_token:
            return out


# --- PutSecretValue response shape -------------------------------------------------------


def test_put_returns_arn_name_version_id_and_default_current_stage(sm, name):
    created = sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    resp = put(sm, name, "v2", tok=tok)
    assert keys(resp) == {"ARN", "Name", "VersionId", "VersionStages"}
    assert resp["VersionStages"] == ["AWSCURRENT"]
    assert resp["VersionId"] == tok
    assert resp["ARN"] == created["ARN"]
    assert resp["Name"] == name


def test_put_returns_the_requested_stages(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    resp = put(sm, name, "v2", ["AWSPENDING"])
    assert keys(resp) == {"ARN", "Name", "VersionId", "VersionStages"}
    assert resp["VersionStages"] == ["AWSPENDING"]


def test_put_binary_round_trips(sm, name):
    sm.create_secret(Name=name)
    resp = sm.put_secret_value(SecretId=name, SecretBinary=b"\x00\x01\x02\xff")
    assert resp["VersionStages"] == ["AWSCURRENT"]
    assert sm.get_secret_value(SecretId=name)["SecretBinary"] == b"\x00\x01\x02\xff"


def test_put_first_value_on_empty_secret_gets_current(sm, name):
    sm.create_secret(Name=name)
    v1 = put(sm, name, "first")["VersionId"]
    assert stages(sm, name) == {v1: ["AWSCURRENT"]}


def test_put_with_string_and_binary_is_invalid_parameter(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    expect_error(
        sm.put_secret_value, "InvalidParameterException", SecretId=name, SecretString="s", SecretBinary=b"b"
    )


def test_put_on_unknown_secret_is_resource_not_found(sm, name):
    expect_error(sm.put_secret_value, "ResourceNotFoundException", MSG_NOT_FOUND, SecretId=name, SecretString="v")


def test_put_same_token_same_value_is_idempotent(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    tok = token()
    put(sm, name, "v2", tok=tok)
    again = put(sm, name, "v2", tok=tok)
    assert again["VersionId"] == tok
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], tok: ["AWSCURRENT"]}
    assert {v["VersionId"] for v in listed(sm, name, IncludeDeprecated=True)} == {v1, tok}


def test_put_same_token_different_value_is_resource_exists(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    put(sm, name, "v2", tok=tok)
    expect_error(
        sm.put_secret_value, "ResourceExistsException", SecretId=name, SecretString="v3", ClientRequestToken=tok
    )


# --- Rule 1: a value with no VersionStages ----------------------------------------------


def test_rule1_put_demotes_current_to_previous_and_deprecates_old_previous(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2")["VersionId"]
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    v3 = put(sm, name, "v3")["VersionId"]
    assert stages(sm, name) == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v3"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "v2"


def test_rule1_old_current_holding_pending_keeps_only_previous(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["AWSPENDING"])["VersionId"]
    move_current(sm, name, v1, v2)
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "AWSPENDING"]}
    v3 = put(sm, name, "v3")["VersionId"]
    # AWSPENDING goes away with AWSCURRENT and is left on no version.
    assert stages(sm, name) == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    expect_error(sm.get_secret_value, "ResourceNotFoundException", SecretId=name, VersionStage="AWSPENDING")


def test_rule1_update_secret_follows_the_same_rule(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = sm.update_secret(SecretId=name, SecretString="v2")["VersionId"]
    v3 = sm.update_secret(SecretId=name, SecretString="v3")["VersionId"]
    assert stages(sm, name) == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    assert v1 not in stages(sm, name)


# --- Rule 2: VersionStages without AWSCURRENT --------------------------------------------


def test_rule2_put_pending_leaves_current_and_previous_alone(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2")["VersionId"]
    v3 = put(sm, name, "v3", ["AWSPENDING"])["VersionId"]
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"], v3: ["AWSPENDING"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPENDING")["SecretString"] == "v3"


def test_rule2_custom_label_moves_off_its_previous_holder(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["PENDING"])["VersionId"]
    v3 = put(sm, name, "v3", ["PENDING"])["VersionId"]
    # v2 lost its only label and is deprecated.
    assert stages(sm, name) == {v1: ["AWSCURRENT"], v3: ["PENDING"]}
    assert v2 not in {v["VersionId"] for v in listed(sm, name)}


def test_rule2_moving_all_labels_deprecates_the_old_holder(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["one", "two", "three"])["VersionId"]
    assert stages(sm, name) == {v1: ["AWSCURRENT"], v2: ["one", "three", "two"]}
    v3 = put(sm, name, "v3", ["one", "two", "three", "four"])["VersionId"]
    assert stages(sm, name) == {v1: ["AWSCURRENT"], v3: ["four", "one", "three", "two"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v1"


def test_rule2_moving_some_labels_leaves_the_rest(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["one", "two", "three"])["VersionId"]
    v3 = put(sm, name, "v3", ["one", "two", "four"])["VersionId"]
    assert stages(sm, name) == {v1: ["AWSCURRENT"], v2: ["three"], v3: ["four", "one", "two"]}


def test_rule2_put_pending_takes_only_pending_from_current(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["AWSCURRENT", "AWSPENDING", "AWSSOMETHING", "PUT1"])["VersionId"]
    assert stages(sm, name) == {
        v1: ["AWSPREVIOUS"],
        v2: ["AWSCURRENT", "AWSPENDING", "AWSSOMETHING", "PUT1"],
    }
    v3 = put(sm, name, "v3", ["AWSPENDING"])["VersionId"]
    assert stages(sm, name) == {
        v1: ["AWSPREVIOUS"],
        v2: ["AWSCURRENT", "AWSSOMETHING", "PUT1"],
        v3: ["AWSPENDING"],
    }
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"


# --- Rule 3: VersionStages including AWSCURRENT ------------------------------------------


def test_rule3_put_current_with_custom_label_demotes_old_current(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    resp = put(sm, name, "v2", ["AWSCURRENT", "PUT0"])
    v2 = resp["VersionId"]
    assert sorted(resp["VersionStages"]) == ["AWSCURRENT", "PUT0"]
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "PUT0"]}
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"


# --- Rule 4: UpdateSecretVersionStage moving AWSCURRENT ----------------------------------


def test_rule4_new_current_keeps_its_labels_including_pending(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["AWSCURRENT", "PUT0"])["VersionId"]
    v3 = put(sm, name, "v3", ["AWSPENDING", "PUT1"])["VersionId"]
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "PUT0"], v3: ["AWSPENDING", "PUT1"]}
    move_current(sm, name, v2, v3)
    # v1 lost AWSPREVIOUS and had nothing else, so it is deprecated.
    assert stages(sm, name) == {
        v2: ["AWSPREVIOUS", "PUT0"],
        v3: ["AWSCURRENT", "AWSPENDING", "PUT1"],
    }
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v3"


def test_rule4_old_current_keeps_custom_labels_and_former_previous_keeps_its_own(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["PUT0"])["VersionId"]
    move_current(sm, name, v1, v2)
    assert stages(sm, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "PUT0"]}
    v3 = put(sm, name, "v3", ["AWSSOMETHING", "PUT1"])["VersionId"]
    move_current(sm, name, v2, v3)
    assert stages(sm, name) == {
        v2: ["AWSPREVIOUS", "PUT0"],
        v3: ["AWSCURRENT", "AWSSOMETHING", "PUT1"],
    }
    v4 = put(sm, name, "v4", ["PUT2"])["VersionId"]
    move_current(sm, name, v3, v4)
    assert stages(sm, name) == {
        v2: ["PUT0"],
        v3: ["AWSPREVIOUS", "AWSSOMETHING", "PUT1"],
        v4: ["AWSCURRENT", "PUT2"],
    }
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "v3"


# --- Rule 5: removing a label ------------------------------------------------------------


def test_rule5_remove_label_without_move_target(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["PENDING", "KEEP"])["VersionId"]
    resp = sm.update_secret_version_stage(SecretId=name, VersionStage="PENDING", RemoveFromVersionId=v2)
    assert keys(resp) == {"ARN", "Name"}
    assert stages(sm, name) == {v1: ["AWSCURRENT"], v2: ["KEEP"]}


def test_rule5_removing_last_label_deprecates_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["PENDING"])["VersionId"]
    sm.update_secret_version_stage(SecretId=name, VersionStage="PENDING", RemoveFromVersionId=v2)
    assert stages(sm, name) == {v1: ["AWSCURRENT"]}
    deprecated = [v for v in listed(sm, name, IncludeDeprecated=True) if v["VersionId"] == v2]
    assert len(deprecated) == 1
    assert "VersionStages" not in deprecated[0]


def test_add_custom_label_to_existing_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    sm.update_secret_version_stage(SecretId=name, VersionStage="EXTRA", MoveToVersionId=v1)
    assert stages(sm, name) == {v1: ["AWSCURRENT", "EXTRA"]}
    assert sm.get_secret_value(SecretId=name, VersionStage="EXTRA")["VersionId"] == v1


# --- Rule 6: GetSecretValue by VersionId reports current labels --------------------------


def test_rule6_get_by_version_id_reports_labels_after_move(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2", ["PENDING"])["VersionId"]
    move_current(sm, name, v1, v2)
    assert sm.get_secret_value(SecretId=name, VersionId=v1)["VersionStages"] == ["AWSPREVIOUS"]
    assert sorted(sm.get_secret_value(SecretId=name, VersionId=v2)["VersionStages"]) == ["AWSCURRENT", "PENDING"]


# --- Rule 7: every value write makes a version; LastChangedDate rises ------------------


def test_rule7_put_of_unchanged_value_makes_new_version(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="same")["VersionId"]
    v2 = put(sm, name, "same")["VersionId"]
    v3 = put(sm, name, "same")["VersionId"]
    assert len({v1, v2, v3}) == 3
    assert stages(sm, name) == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}


def test_rule7_last_changed_date_rises_strictly_across_quick_puts(sm, name):
    sm.create_secret(Name=name, SecretString="v0")
    d0 = sm.describe_secret(SecretId=name)["LastChangedDate"]
    put(sm, name, "v1")
    d1 = sm.describe_secret(SecretId=name)["LastChangedDate"]
    put(sm, name, "v2")
    d2 = sm.describe_secret(SecretId=name)["LastChangedDate"]
    assert d0 < d1 < d2


# --- Rule 8: LastAccessedDate ------------------------------------------------------------


def test_rule8_last_accessed_date_appears_after_get_and_is_truncated_to_the_day(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    assert "LastAccessedDate" not in sm.describe_secret(SecretId=name)
    assert all("LastAccessedDate" not in v for v in listed(sm, name))
    day_before = datetime.now(timezone.utc).date()
    sm.get_secret_value(SecretId=name)
    first = sm.describe_secret(SecretId=name)["LastAccessedDate"]
    sm.get_secret_value(SecretId=name)
    second = sm.describe_secret(SecretId=name)["LastAccessedDate"]
    day_after = datetime.now(timezone.utc).date()
    utc = first.astimezone(timezone.utc)
    assert (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0)
    assert utc.date() in {day_before, day_after}
    assert first == second


def test_rule8_last_accessed_date_is_per_version_in_list_version_ids(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2")["VersionId"]
    sm.get_secret_value(SecretId=name)
    by_id = {v["VersionId"]: v for v in listed(sm, name)}
    assert "LastAccessedDate" in by_id[v2]
    assert "LastAccessedDate" not in by_id[v1]
    utc = by_id[v2]["LastAccessedDate"].astimezone(timezone.utc)
    assert (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0)


# --- Rule 9: VersionId equals ClientRequestToken ----------------------------------------


def test_rule9_put_version_id_equals_client_request_token(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    tok = token()
    assert put(sm, name, "v2", tok=tok)["VersionId"] == tok
    assert tok in stages(sm, name)


# --- ListSecretVersionIds ------------------------------------------------------------------


def test_list_version_ids_shape(sm, name):
    arn = sm.create_secret(Name=name, SecretString="v1")["ARN"]
    v2 = put(sm, name, "v2")["VersionId"]
    resp = sm.list_secret_version_ids(SecretId=name)
    assert keys(resp) == {"ARN", "Name", "Versions"}
    assert resp["ARN"] == arn
    assert resp["Name"] == name
    assert len(resp["Versions"]) == 2
    for v in resp["Versions"]:
        assert keys(v) == {"CreatedDate", "KmsKeyIds", "VersionId", "VersionStages"}
        assert v["KmsKeyIds"] == ["DefaultEncryptionKey"]
    assert {v["VersionId"]: v["VersionStages"] for v in resp["Versions"]}[v2] == ["AWSCURRENT"]


def test_list_version_ids_hides_deprecated_unless_asked(sm, name):
    v1 = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    v2 = put(sm, name, "v2")["VersionId"]
    v3 = put(sm, name, "v3")["VersionId"]
    assert {v["VersionId"] for v in listed(sm, name)} == {v2, v3}
    assert {v["VersionId"] for v in listed(sm, name, IncludeDeprecated=False)} == {v2, v3}
    everything = {v["VersionId"]: v for v in listed(sm, name, IncludeDeprecated=True)}
    assert set(everything) == {v1, v2, v3}
    assert "VersionStages" not in everything[v1]
    assert everything[v1]["KmsKeyIds"] == ["DefaultEncryptionKey"]
    assert everything[v2]["VersionStages"] == ["AWSPREVIOUS"]


def test_list_version_ids_pages_with_max_results(sm, name):
    ids = {sm.create_secret(Name=name, SecretString="v0")["VersionId"]}
    for i in range(6):
        ids.add(put(sm, name, f"v{i + 1}", [f"L{i}"])["VersionId"])
    seen, pages, next_token = [], [], None
    while True:
        args = {"SecretId": name, "MaxResults": 2}
        if next_token:
            args["NextToken"] = next_token
        page = sm.list_secret_version_ids(**args)
        pages.append(page)
        seen.extend(v["VersionId"] for v in page["Versions"])
        next_token = page.get("NextToken")
        if not next_token:
            assert "NextToken" not in page
            break
        assert len(pages) < 10
    assert [len(p["Versions"]) for p in pages] == [2, 2, 2, 1]
    assert sorted(seen) == sorted(ids)


def test_list_version_ids_single_page_has_no_next_token_key(sm, name):
    sm.create_secret(Name=name, SecretString="v1")
    resp = sm.list_secret_version_ids(SecretId=name, MaxResults=10)
    assert "NextToken" not in resp
