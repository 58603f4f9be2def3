//! The response elements an IAM API call's event records, in CloudTrail's shapes (the
//! answer's members, lower-camel-cased by the event): what a `Create*` call created, read
//! back in the transaction that created it (its event commits in that transaction, before
//! the handler has the answer), and never a secret access key. CloudTrail writes the
//! answers' dates as `Jul 19, 2019, 4:27:48 PM`.

use crate::iam::UserRecord;
use crate::iam::directory::{self, Entity, GroupRecord, ManagedPolicy, RoleRecord, Tag};
use coffer_audit::format_response_date;
use coffer_store::ReadTxn;
use serde_json::{Value, json};

fn date(ms: i64) -> Value {
    Value::String(format_response_date(ms))
}

/// `entity`'s record named `name`, if `tx` holds it (a store error records nothing: the
/// event is still written, without response elements).
fn read<T: serde::de::DeserializeOwned>(
    tx: &dyn ReadTxn,
    entity: Entity,
    account: &str,
    name: &str,
) -> Option<T> {
    directory::entity_in(tx, entity, account, name).ok().flatten()
}

/// Adds `tags` under `Tags` when there are any, as CloudTrail shows them.
fn with_tags(mut member: Value, tags: &[Tag]) -> Value {
    if !tags.is_empty() {
        let tags: Vec<Value> =
            tags.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect();
        member["Tags"] = Value::Array(tags);
    }
    member
}

/// CreateUser's `user`.
pub(super) fn created_user(tx: &dyn ReadTxn, account: &str, name: &str) -> Value {
    let Some(u) = read::<UserRecord>(tx, Entity::User, account, name) else { return Value::Null };
    let user = json!({
        "Path": u.path,
        "UserName": u.name,
        "UserId": u.user_id,
        "Arn": u.principal().arn,
        "CreateDate": date(u.created_ms),
    });
    json!({ "User": with_tags(user, &u.tags) })
}

/// CreateGroup's `group`.
pub(super) fn created_group(tx: &dyn ReadTxn, account: &str, name: &str) -> Value {
    let Some(g) = read::<GroupRecord>(tx, Entity::Group, account, name) else {
        return Value::Null;
    };
    json!({"Group": {
        "Path": g.path,
        "GroupName": g.name,
        "GroupId": g.group_id,
        "Arn": g.arn(),
        "CreateDate": date(g.created_ms),
    }})
}

/// CreateRole's `role`. Its trust policy is left out: the request parameters hold it as
/// sent, and the stored form binds principals to their unique ids.
pub(super) fn created_role(tx: &dyn ReadTxn, account: &str, name: &str) -> Value {
    role_elements(tx, account, name, false)
}

/// UpdateRoleDescription's `role`: the role as it answers it (GetRole's members, so its
/// maximum session duration too), its trust policy left out as CreateRole's.
pub(super) fn described_role(tx: &dyn ReadTxn, account: &str, name: &str) -> Value {
    role_elements(tx, account, name, true)
}

fn role_elements(tx: &dyn ReadTxn, account: &str, name: &str, with_max: bool) -> Value {
    let Some(r) = read::<RoleRecord>(tx, Entity::Role, account, name) else { return Value::Null };
    let mut role = json!({
        "Path": r.path,
        "RoleName": r.name,
        "RoleId": r.role_id,
        "Arn": r.arn(),
        "CreateDate": date(r.created_ms),
    });
    if with_max {
        role["MaxSessionDuration"] = json!(r.max_session_secs);
    }
    if !r.description.is_empty() {
        role["Description"] = json!(r.description);
    }
    json!({ "Role": with_tags(role, &r.tags) })
}

/// CreateOpenIDConnectProvider's answer: the provider's ARN (known before the transaction,
/// from its URL) and its tags when there are any.
pub(super) fn created_oidc_provider(arn: &str, tags: &[Tag]) -> Value {
    with_tags(json!({ "OpenIDConnectProviderArn": arn }), tags)
}

/// CreatePolicy's `policy`.
pub(super) fn created_policy(tx: &dyn ReadTxn, account: &str, name: &str) -> Value {
    let Some(p) = directory::policy_named_in(tx, account, name).ok().flatten() else {
        return Value::Null;
    };
    let policy = json!({
        "PolicyName": p.name,
        "PolicyId": p.policy_id,
        "Arn": p.arn(),
        "Path": p.path,
        "DefaultVersionId": p.default_version,
        "AttachmentCount": 0,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": true,
        "CreateDate": date(p.created_ms),
        "UpdateDate": date(p.updated_ms),
    });
    json!({ "Policy": with_tags(policy, &p.tags) })
}

/// CreatePolicyVersion's `policyVersion`: the policy's newest version.
pub(super) fn created_policy_version(tx: &dyn ReadTxn, account: &str, arn: &str) -> Value {
    let Some((_, name)) = directory::policy_arn_parts(arn) else { return Value::Null };
    let policy: Option<ManagedPolicy> =
        directory::policy_named_in(tx, account, name).ok().flatten();
    let Some(p) = policy.filter(|p| p.arn() == arn) else { return Value::Null };
    let newest = p
        .versions
        .iter()
        .max_by_key(|v| v.id.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()).unwrap_or(0));
    let Some(v) = newest else { return Value::Null };
    json!({"PolicyVersion": {
        "VersionId": v.id,
        "IsDefaultVersion": v.id == p.default_version,
        "CreateDate": date(v.created_ms),
    }})
}

/// CreateAccessKey's `accessKey`: its id, known before the transaction, never its secret.
pub(super) fn created_access_key(user_name: &str, access_key_id: &str, created_ms: i64) -> Value {
    json!({"AccessKey": {
        "UserName": user_name,
        "AccessKeyId": access_key_id,
        "Status": "Active",
        "CreateDate": date(created_ms),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_keys_elements_hold_no_secret_and_take_cloudtrails_date() {
        let v = created_access_key("alice", "AKIAEXAMPLE", 1_563_553_668_000);
        assert_eq!(
            v,
            json!({"AccessKey": {"UserName": "alice", "AccessKeyId": "AKIAEXAMPLE",
                "Status": "Active", "CreateDate": "Jul 19, 2019, 4:27:48 PM"}})
        );
    }

    #[test]
    fn tags_are_shown_only_when_there_are_some() {
        assert_eq!(with_tags(json!({"A": 1}), &[]), json!({"A": 1}));
        let tags = [Tag { key: "team".into(), value: "blue".into() }];
        assert_eq!(
            with_tags(json!({"A": 1}), &tags),
            json!({"A": 1, "Tags": [{"Key": "team", "Value": "blue"}]})
        );
    }
}
