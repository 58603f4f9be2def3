//! The resources LookupEvents lists for an event (its `Resources`, and what the
//! `ResourceType` and `ResourceName` lookup attributes match), as CloudTrail's event
//! history lists them: the record's own `resources`, and for IAM, STS and KMS events the
//! users, roles, policies, access keys and keys read from what the record already holds.
//!
//! CloudTrail's records of IAM calls have no `resources` member, yet its event history
//! lists `AWS::IAM::User` and the rest for them: they are derived from the event, and so
//! they are here, at read time. An event stores nothing twice (its stored bytes are
//! unchanged) and events written before this was read get their resources too. The rules
//! and their sources: `docs/design/audit.md`, "Resources of IAM, STS and KMS events".

use crate::event::Event;
use coffer_core::Partition;
use coffer_core::names::is_kms_key_id as is_key_id;
use serde_json::Value;

/// One entry of an event's `Resources` in a LookupEvents answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub kind: String,
    pub name: String,
}

pub const IAM_ACCESS_KEY: &str = "AWS::IAM::AccessKey";
pub const IAM_GROUP: &str = "AWS::IAM::Group";
pub const IAM_OIDC_PROVIDER: &str = "AWS::IAM::OIDCProvider";
pub const IAM_POLICY: &str = "AWS::IAM::Policy";
pub const IAM_ROLE: &str = "AWS::IAM::Role";
pub const IAM_USER: &str = "AWS::IAM::User";
pub const STS_ASSUMED_ROLE: &str = "AWS::STS::AssumedRole";
pub const STS_FEDERATED_USER: &str = "AWS::STS::FederatedUser";
pub const KMS_KEY: &str = "AWS::KMS::Key";

/// Every resource LookupEvents lists for `event`: the record's `resources` first (type and
/// ARN, as written), then those derived from its request parameters and response
/// elements, each (type, name) once.
pub fn listed_resources(event: &Event) -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    let mut add = |kind: &str, name: &str| {
        if !name.is_empty() && !out.iter().any(|l| l.kind == kind && l.name == name) {
            out.push(Listed { kind: kind.to_string(), name: name.to_string() });
        }
    };
    for resource in &event.resources {
        add(&resource.kind, &resource.arn);
    }
    let (request, response) = (&event.request_parameters, &event.response_elements);
    match event.event_source.as_str() {
        "iam.amazonaws.com" => iam_resources(event, request, response, &mut add),
        "sts.amazonaws.com" => sts_resources(&event.event_name, request, response, &mut add),
        "kms.amazonaws.com" => kms_resources(event, request, response, &mut add),
        _ => {}
    }
    out
}

/// The string at `path` in `doc`, if there is one.
fn at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(doc, |v, key| v.get(*key))?.as_str()
}

/// An IAM call's resources, ordered by the last part of their type as CloudTrail orders
/// them (AccessKey, Group, OIDCProvider, Policy, Role, User): users, groups and roles by
/// name, managed policies and OIDC providers by ARN, inline policies by name, access keys
/// by id.
fn iam_resources(
    event: &Event,
    request: &Value,
    response: &Value,
    add: &mut impl FnMut(&str, &str),
) {
    let first = |paths: &[&[&str]]| {
        paths
            .iter()
            .find_map(|path| at(request, path).or_else(|| at(response, path)).map(str::to_string))
    };
    if let Some(key) = first(&[&["accessKeyId"], &["accessKey", "accessKeyId"]]) {
        add(IAM_ACCESS_KEY, &key);
    }
    if let Some(group) = first(&[&["groupName"], &["group", "groupName"]]) {
        add(IAM_GROUP, &group);
    }
    if let Some(provider) = first(&[&["openIDConnectProviderArn"]]) {
        add(IAM_OIDC_PROVIDER, &provider);
    } else if event.event_name == "CreateOpenIDConnectProvider"
        && let Some(url) = at(request, &["url"])
    {
        add(IAM_OIDC_PROVIDER, &oidc_provider_arn(event, url));
    }
    // A managed policy by ARN (CreatePolicy's only in its answer); an inline one by name.
    if let Some(policy) = first(&[&["policyArn"], &["policy", "arn"], &["policyName"]]) {
        add(IAM_POLICY, &policy);
    }
    if let Some(role) = first(&[&["roleName"], &["role", "roleName"]]) {
        add(IAM_ROLE, &role);
    }
    if let Some(user) = first(&[&["userName"], &["user", "userName"], &["accessKey", "userName"]]) {
        add(IAM_USER, &user);
    }
}

/// The ARN IAM gives the OIDC provider of `url` in the event's account, in the partition
/// of the region the request was signed for (CreateOpenIDConnectProvider's answer, which
/// the event does not record).
fn oidc_provider_arn(event: &Event, url: &str) -> String {
    let host_and_path = url.strip_prefix("https://").unwrap_or(url);
    let partition = Partition::of_region(&event.aws_region);
    partition.arn("iam", "", &event.recipient_account_id, &format!("oidc-provider/{host_and_path}"))
}

/// An STS call's resources: the access key id of the credentials it issued, the session
/// (the assumed role's ARN, id and session name; the federated user's ARN, id and name),
/// and the role assumed by ARN; GetAccessKeyInfo's key. GetCallerIdentity names none.
fn sts_resources(name: &str, request: &Value, response: &Value, add: &mut impl FnMut(&str, &str)) {
    let issued = at(response, &["credentials", "accessKeyId"]);
    if let Some(key) = issued.or_else(|| at(request, &["accessKeyId"])) {
        add(IAM_ACCESS_KEY, key);
    }
    match name {
        "AssumeRole" | "AssumeRoleWithWebIdentity" | "AssumeRoleWithSAML" => {
            for name in [
                at(response, &["assumedRoleUser", "arn"]),
                at(response, &["assumedRoleUser", "assumedRoleId"]),
                at(request, &["roleSessionName"]),
            ]
            .into_iter()
            .flatten()
            {
                add(STS_ASSUMED_ROLE, name);
            }
            if let Some(role) = at(request, &["roleArn"]) {
                add(IAM_ROLE, role);
            }
        }
        "GetFederationToken" => {
            for name in [
                at(response, &["federatedUser", "arn"]),
                at(response, &["federatedUser", "federatedUserId"]),
                at(request, &["name"]),
            ]
            .into_iter()
            .flatten()
            {
                add(STS_FEDERATED_USER, name);
            }
        }
        _ => {}
    }
}

/// A KMS call's keys by ARN, as CloudTrail's KMS records name them in `resources` for the
/// key operations too (DisableKey, ScheduleKeyDeletion, ...), not only the cryptographic
/// ones the record holds already: `keyId`, `targetKeyId` and `destinationKeyId` given as a
/// key ARN or a bare key id (in the event's account and region); an alias names no key
/// here (resolving it would need the store).
fn kms_resources(
    event: &Event,
    request: &Value,
    response: &Value,
    add: &mut impl FnMut(&str, &str),
) {
    for doc in [response, request] {
        for member in ["keyId", "targetKeyId", "sourceKeyId", "destinationKeyId"] {
            if let Some(arn) = at(doc, &[member]).and_then(|named| key_arn(event, named)) {
                add(KMS_KEY, &arn);
            }
        }
    }
}

/// The key ARN `named` denotes: a key ARN itself, or a bare key id (a UUID, or `mrk-` and
/// 32 hex digits) in the event's account and region.
pub fn key_arn(event: &Event, named: &str) -> Option<String> {
    if let Some(partition) = Partition::of_arn(named) {
        // arn:<partition>:kms:<region>:<account>:key/<id>
        let rest = &named["arn:".len() + partition.as_str().len()..];
        let mut parts = rest.splitn(5, ':');
        let (_, service, _, _, resource) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        return (service == "kms" && resource.strip_prefix("key/").is_some_and(is_key_id))
            .then(|| named.to_string());
    }
    is_key_id(named).then(|| {
        Partition::of_region(&event.aws_region).arn(
            "kms",
            &event.aws_region,
            &event.recipient_account_id,
            &format!("key/{named}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EVENT_VERSION, Resource, UserIdentity};
    use serde_json::json;

    fn event(source: &str, name: &str, request: Value, response: Value) -> Event {
        Event {
            event_version: EVENT_VERSION.into(),
            user_identity: UserIdentity::default(),
            event_time: "2026-01-01T00:00:00Z".into(),
            event_source: source.into(),
            event_name: name.into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "test".into(),
            error_code: None,
            error_message: None,
            request_parameters: request,
            response_elements: response,
            request_id: None,
            event_id: "e".into(),
            read_only: false,
            resources: vec![],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "111122223333".into(),
            session_credential_from_console: None,
            event_category: "Management".into(),
        }
    }

    fn pairs(event: &Event) -> Vec<(String, String)> {
        listed_resources(event).into_iter().map(|l| (l.kind, l.name)).collect()
    }

    fn owned(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect()
    }

    const IAM: &str = "iam.amazonaws.com";
    const STS: &str = "sts.amazonaws.com";
    const POLICY: &str = "arn:aws:iam::111122223333:policy/p";

    #[test]
    fn iam_calls_list_what_they_touched_in_cloudtrails_order() {
        let create = event(
            IAM,
            "CreateUser",
            json!({"userName": "bob"}),
            json!({"user": {
            "userName": "bob", "arn": "arn:aws:iam::111122223333:user/bob"}}),
        );
        assert_eq!(pairs(&create), owned(&[(IAM_USER, "bob")]));
        let attach = event(
            IAM,
            "AttachRolePolicy",
            json!({"roleName": "r", "policyArn": POLICY}),
            Value::Null,
        );
        assert_eq!(pairs(&attach), owned(&[(IAM_POLICY, POLICY), (IAM_ROLE, "r")]));
        let inline = event(
            IAM,
            "PutUserPolicy",
            json!({"userName": "bob", "policyName": "read", "policyDocument": "{}"}),
            Value::Null,
        );
        assert_eq!(pairs(&inline), owned(&[(IAM_POLICY, "read"), (IAM_USER, "bob")]));
        let key = event(
            IAM,
            "CreateAccessKey",
            json!({"userName": "bob"}),
            json!({"accessKey": {"accessKeyId": "AKIAEXAMPLE", "userName": "bob"}}),
        );
        assert_eq!(pairs(&key), owned(&[(IAM_ACCESS_KEY, "AKIAEXAMPLE"), (IAM_USER, "bob")]));
        // The caller's own key: CreateAccessKey without a user name names the user only in
        // its answer.
        let own = event(
            IAM,
            "CreateAccessKey",
            Value::Null,
            json!({"accessKey": {"accessKeyId": "AKIAOWN", "userName": "alice"}}),
        );
        assert_eq!(pairs(&own), owned(&[(IAM_ACCESS_KEY, "AKIAOWN"), (IAM_USER, "alice")]));
        let member =
            event(IAM, "AddUserToGroup", json!({"groupName": "g", "userName": "bob"}), Value::Null);
        assert_eq!(pairs(&member), owned(&[(IAM_GROUP, "g"), (IAM_USER, "bob")]));
        // CreatePolicy names its policy by ARN from its answer, by name if it failed.
        let created = event(
            IAM,
            "CreatePolicy",
            json!({"policyName": "p", "policyDocument": "{}"}),
            json!({"policy": {"arn": POLICY, "policyName": "p"}}),
        );
        assert_eq!(pairs(&created), owned(&[(IAM_POLICY, POLICY)]));
        let refused = event(IAM, "CreatePolicy", json!({"policyName": "p"}), Value::Null);
        assert_eq!(pairs(&refused), owned(&[(IAM_POLICY, "p")]));
        assert!(pairs(&event(IAM, "ListUsers", Value::Null, Value::Null)).is_empty());
    }

    #[test]
    fn an_oidc_provider_is_named_by_arn_in_the_partition_of_the_region() {
        let mut create = event(
            IAM,
            "CreateOpenIDConnectProvider",
            json!({"url": "https://issuer.example/tenant"}),
            Value::Null,
        );
        create.aws_region = "cn-north-1".into();
        assert_eq!(
            pairs(&create),
            owned(&[(
                IAM_OIDC_PROVIDER,
                "arn:aws-cn:iam::111122223333:oidc-provider/issuer.example/tenant"
            )])
        );
        let arn = "arn:aws:iam::111122223333:oidc-provider/issuer.example";
        let delete = event(
            IAM,
            "DeleteOpenIDConnectProvider",
            json!({"openIDConnectProviderArn": arn}),
            Value::Null,
        );
        assert_eq!(pairs(&delete), owned(&[(IAM_OIDC_PROVIDER, arn)]));
    }

    #[test]
    fn sts_calls_list_the_issued_key_the_session_and_the_role() {
        let role = "arn:aws:iam::111122223333:role/r";
        let assumed = "arn:aws:sts::111122223333:assumed-role/r/s";
        let e = event(
            STS,
            "AssumeRole",
            json!({"roleArn": role, "roleSessionName": "s"}),
            json!({
            "credentials": {"accessKeyId": "ASIAEXAMPLE", "expiration": "x"},
            "assumedRoleUser": {"arn": assumed, "assumedRoleId": "AROAEXAMPLE:s"}}),
        );
        assert_eq!(
            pairs(&e),
            owned(&[
                (IAM_ACCESS_KEY, "ASIAEXAMPLE"),
                (STS_ASSUMED_ROLE, assumed),
                (STS_ASSUMED_ROLE, "AROAEXAMPLE:s"),
                (STS_ASSUMED_ROLE, "s"),
                (IAM_ROLE, role),
            ])
        );
        // Refused: what it asked for.
        let refused =
            event(STS, "AssumeRole", json!({"roleArn": role, "roleSessionName": "s"}), Value::Null);
        assert_eq!(pairs(&refused), owned(&[(STS_ASSUMED_ROLE, "s"), (IAM_ROLE, role)]));
        let federated = event(
            STS,
            "GetFederationToken",
            json!({"name": "fed"}),
            json!({
            "credentials": {"accessKeyId": "ASIAFED"},
            "federatedUser": {"arn": "arn:aws:sts::111122223333:federated-user/fed",
                              "federatedUserId": "111122223333:fed"}}),
        );
        assert_eq!(
            pairs(&federated),
            owned(&[
                (IAM_ACCESS_KEY, "ASIAFED"),
                (STS_FEDERATED_USER, "arn:aws:sts::111122223333:federated-user/fed"),
                (STS_FEDERATED_USER, "111122223333:fed"),
                (STS_FEDERATED_USER, "fed"),
            ])
        );
        let session = event(
            STS,
            "GetSessionToken",
            Value::Null,
            json!({"credentials": {"accessKeyId": "ASIASESSION"}}),
        );
        assert_eq!(pairs(&session), owned(&[(IAM_ACCESS_KEY, "ASIASESSION")]));
        let info = event(STS, "GetAccessKeyInfo", json!({"accessKeyId": "AKIAINFO"}), Value::Null);
        assert_eq!(pairs(&info), owned(&[(IAM_ACCESS_KEY, "AKIAINFO")]));
        assert!(pairs(&event(STS, "GetCallerIdentity", Value::Null, Value::Null)).is_empty());
    }

    #[test]
    fn kms_calls_list_their_key_by_arn_once_and_never_an_alias() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
        let disable = event("kms.amazonaws.com", "DisableKey", json!({"keyId": id}), Value::Null);
        assert_eq!(pairs(&disable), owned(&[(KMS_KEY, &arn)]));
        // A resource the record holds is listed once, as written.
        let mut encrypt = event("kms.amazonaws.com", "Encrypt", json!({"keyId": id}), Value::Null);
        encrypt.resources = vec![Resource {
            arn: arn.clone(),
            account_id: Some("111122223333".into()),
            kind: KMS_KEY.into(),
        }];
        assert_eq!(pairs(&encrypt), owned(&[(KMS_KEY, &arn)]));
        let alias = event("kms.amazonaws.com", "Encrypt", json!({"keyId": "alias/a"}), Value::Null);
        assert!(pairs(&alias).is_empty());
        let mrk = event(
            "kms.amazonaws.com",
            "DescribeKey",
            json!({"keyId": "mrk-0123456789abcdef0123456789abcdef"}),
            Value::Null,
        );
        assert_eq!(
            pairs(&mrk),
            owned(&[(
                KMS_KEY,
                "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
            )])
        );
        for not_a_key in [
            "db",
            "1234abcd",
            "arn:aws:kms:us-east-1:111122223333:alias/a",
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf",
        ] {
            let e =
                event("kms.amazonaws.com", "DescribeKey", json!({"keyId": not_a_key}), Value::Null);
            assert!(pairs(&e).is_empty(), "{not_a_key}");
        }
    }

    #[test]
    fn other_services_list_only_the_records_resources() {
        let e = event(
            "secretsmanager.amazonaws.com",
            "GetSecretValue",
            json!({"secretId": "db", "userName": "bob"}),
            Value::Null,
        );
        assert!(pairs(&e).is_empty());
    }
}
