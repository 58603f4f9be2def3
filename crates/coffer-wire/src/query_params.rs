//! The request parameters a query-protocol call (STS, the IAM API) records in its audit
//! event: the form's members of the operation's input shape, as JSON in the shapes
//! CloudTrail gives them (numbers, booleans, lists, lists of structures), with every
//! sensitive member left out. No model of STS or IAM is embedded (the server checks
//! their forms itself): [`INPUTS`] is the input shape of each operation Coffer serves,
//! taken from botocore's `iam` and `sts` service models (members the models mark
//! `sensitive` are [`Kind::Sensitive`]).

use crate::operation::{IamOp, Operation, StsOp};
use crate::query_form::Form;
use serde_json::{Map, Value};

/// How a member is sent in the form and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (or a timestamp): recorded as sent.
    Text,
    /// An integer: recorded as a number (as sent when it is not one).
    Number,
    /// A boolean: recorded as `true`/`false` (as sent when it is neither).
    Flag,
    /// A list of strings: `Name.member.N`.
    Texts,
    /// A list of structures of string members: `Name.member.N.Member`.
    Records(&'static [&'static str]),
    /// Never recorded: a password, a token, an assertion.
    Sensitive,
}

/// The input members of every query-protocol operation Coffer serves.
type Inputs = &'static [(Operation, &'static [(&'static str, Kind)])];

/// Generated from botocore's `sts` (2011-06-15) and `iam` (2010-05-08) service models.
/// STS's `TokenCode` (a one-time MFA code) is not sensitive in the model; it is a
/// credential all the same, and Coffer never records it.
#[rustfmt::skip]
pub const INPUTS: Inputs = &[
    (Operation::Sts(StsOp::AssumeRole), &[("RoleArn", Kind::Text), ("RoleSessionName", Kind::Text), ("PolicyArns", Kind::Records(&["arn"])), ("Policy", Kind::Text), ("DurationSeconds", Kind::Number), ("Tags", Kind::Records(&["Key", "Value"])), ("TransitiveTagKeys", Kind::Texts), ("ExternalId", Kind::Text), ("SerialNumber", Kind::Text), ("TokenCode", Kind::Sensitive), ("SourceIdentity", Kind::Text), ("ProvidedContexts", Kind::Records(&["ProviderArn", "ContextAssertion"]))]),
    (Operation::Sts(StsOp::AssumeRoleWithWebIdentity), &[("RoleArn", Kind::Text), ("RoleSessionName", Kind::Text), ("WebIdentityToken", Kind::Sensitive), ("ProviderId", Kind::Text), ("PolicyArns", Kind::Records(&["arn"])), ("Policy", Kind::Text), ("DurationSeconds", Kind::Number)]),
    (Operation::Sts(StsOp::GetAccessKeyInfo), &[("AccessKeyId", Kind::Text)]),
    (Operation::Sts(StsOp::GetCallerIdentity), &[]),
    (Operation::Sts(StsOp::GetFederationToken), &[("Name", Kind::Text), ("Policy", Kind::Text), ("PolicyArns", Kind::Records(&["arn"])), ("DurationSeconds", Kind::Number), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Sts(StsOp::GetSessionToken), &[("DurationSeconds", Kind::Number), ("SerialNumber", Kind::Text), ("TokenCode", Kind::Sensitive)]),
    (Operation::Iam(IamOp::AddUserToGroup), &[("GroupName", Kind::Text), ("UserName", Kind::Text)]),
    (Operation::Iam(IamOp::AttachGroupPolicy), &[("GroupName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::AttachRolePolicy), &[("RoleName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::AttachUserPolicy), &[("UserName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::CreateAccessKey), &[("UserName", Kind::Text)]),
    (Operation::Iam(IamOp::CreateGroup), &[("Path", Kind::Text), ("GroupName", Kind::Text)]),
    (Operation::Iam(IamOp::CreateOpenIDConnectProvider), &[("Url", Kind::Text), ("ClientIDList", Kind::Texts), ("ThumbprintList", Kind::Texts), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::CreatePolicy), &[("PolicyName", Kind::Text), ("Path", Kind::Text), ("PolicyDocument", Kind::Text), ("Description", Kind::Text), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::CreatePolicyVersion), &[("PolicyArn", Kind::Text), ("PolicyDocument", Kind::Text), ("SetAsDefault", Kind::Flag)]),
    (Operation::Iam(IamOp::CreateRole), &[("Path", Kind::Text), ("RoleName", Kind::Text), ("AssumeRolePolicyDocument", Kind::Text), ("Description", Kind::Text), ("MaxSessionDuration", Kind::Number), ("PermissionsBoundary", Kind::Text), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::CreateUser), &[("Path", Kind::Text), ("UserName", Kind::Text), ("PermissionsBoundary", Kind::Text), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::DeleteAccessKey), &[("UserName", Kind::Text), ("AccessKeyId", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteGroup), &[("GroupName", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteGroupPolicy), &[("GroupName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteOpenIDConnectProvider), &[("OpenIDConnectProviderArn", Kind::Text)]),
    (Operation::Iam(IamOp::DeletePolicy), &[("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::DeletePolicyVersion), &[("PolicyArn", Kind::Text), ("VersionId", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteRole), &[("RoleName", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteRolePolicy), &[("RoleName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteUser), &[("UserName", Kind::Text)]),
    (Operation::Iam(IamOp::DeleteUserPolicy), &[("UserName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::DetachGroupPolicy), &[("GroupName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::DetachRolePolicy), &[("RoleName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::DetachUserPolicy), &[("UserName", Kind::Text), ("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::GetAccessKeyLastUsed), &[("AccessKeyId", Kind::Text)]),
    (Operation::Iam(IamOp::GetGroup), &[("GroupName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::GetGroupPolicy), &[("GroupName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::GetOpenIDConnectProvider), &[("OpenIDConnectProviderArn", Kind::Text)]),
    (Operation::Iam(IamOp::GetPolicy), &[("PolicyArn", Kind::Text)]),
    (Operation::Iam(IamOp::GetPolicyVersion), &[("PolicyArn", Kind::Text), ("VersionId", Kind::Text)]),
    (Operation::Iam(IamOp::GetRole), &[("RoleName", Kind::Text)]),
    (Operation::Iam(IamOp::GetRolePolicy), &[("RoleName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::GetUser), &[("UserName", Kind::Text)]),
    (Operation::Iam(IamOp::GetUserPolicy), &[("UserName", Kind::Text), ("PolicyName", Kind::Text)]),
    (Operation::Iam(IamOp::ListAccessKeys), &[("UserName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListAttachedGroupPolicies), &[("GroupName", Kind::Text), ("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListAttachedRolePolicies), &[("RoleName", Kind::Text), ("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListAttachedUserPolicies), &[("UserName", Kind::Text), ("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListEntitiesForPolicy), &[("PolicyArn", Kind::Text), ("EntityFilter", Kind::Text), ("PathPrefix", Kind::Text), ("PolicyUsageFilter", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListGroupPolicies), &[("GroupName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListGroups), &[("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListGroupsForUser), &[("UserName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListOpenIDConnectProviders), &[]),
    (Operation::Iam(IamOp::ListPolicies), &[("Scope", Kind::Text), ("OnlyAttached", Kind::Flag), ("PathPrefix", Kind::Text), ("PolicyUsageFilter", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListPolicyVersions), &[("PolicyArn", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListRolePolicies), &[("RoleName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListRoleTags), &[("RoleName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListRoles), &[("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListUserPolicies), &[("UserName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListUserTags), &[("UserName", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::ListUsers), &[("PathPrefix", Kind::Text), ("Marker", Kind::Text), ("MaxItems", Kind::Number)]),
    (Operation::Iam(IamOp::PutGroupPolicy), &[("GroupName", Kind::Text), ("PolicyName", Kind::Text), ("PolicyDocument", Kind::Text)]),
    (Operation::Iam(IamOp::PutRolePolicy), &[("RoleName", Kind::Text), ("PolicyName", Kind::Text), ("PolicyDocument", Kind::Text)]),
    (Operation::Iam(IamOp::PutUserPolicy), &[("UserName", Kind::Text), ("PolicyName", Kind::Text), ("PolicyDocument", Kind::Text)]),
    (Operation::Iam(IamOp::RemoveUserFromGroup), &[("GroupName", Kind::Text), ("UserName", Kind::Text)]),
    (Operation::Iam(IamOp::SetDefaultPolicyVersion), &[("PolicyArn", Kind::Text), ("VersionId", Kind::Text)]),
    (Operation::Iam(IamOp::TagRole), &[("RoleName", Kind::Text), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::TagUser), &[("UserName", Kind::Text), ("Tags", Kind::Records(&["Key", "Value"]))]),
    (Operation::Iam(IamOp::UntagRole), &[("RoleName", Kind::Text), ("TagKeys", Kind::Texts)]),
    (Operation::Iam(IamOp::UntagUser), &[("UserName", Kind::Text), ("TagKeys", Kind::Texts)]),
    (Operation::Iam(IamOp::UpdateAccessKey), &[("UserName", Kind::Text), ("AccessKeyId", Kind::Text), ("Status", Kind::Text)]),
    (Operation::Iam(IamOp::UpdateAssumeRolePolicy), &[("RoleName", Kind::Text), ("PolicyDocument", Kind::Text)]),
    (Operation::Iam(IamOp::UpdateGroup), &[("GroupName", Kind::Text), ("NewPath", Kind::Text), ("NewGroupName", Kind::Text)]),
    (Operation::Iam(IamOp::UpdateRole), &[("RoleName", Kind::Text), ("Description", Kind::Text), ("MaxSessionDuration", Kind::Number)]),
    (Operation::Iam(IamOp::UpdateRoleDescription), &[("RoleName", Kind::Text), ("Description", Kind::Text)]),
    (Operation::Iam(IamOp::UpdateUser), &[("UserName", Kind::Text), ("NewPath", Kind::Text), ("NewUserName", Kind::Text)]),
];

/// The input members of `op`, or `None` for an operation of a JSON service.
pub fn input_members(op: Operation) -> Option<&'static [(&'static str, Kind)]> {
    INPUTS.iter().find(|(o, _)| *o == op).map(|(_, members)| *members)
}

/// The members of `op` never recorded (the model's sensitive ones), for the event's
/// redaction to drop at any depth should they ever reach it.
pub fn sensitive_members(op: Operation) -> impl Iterator<Item = &'static str> {
    input_members(op)
        .unwrap_or_default()
        .iter()
        .filter(|(_, kind)| *kind == Kind::Sensitive)
        .map(|(name, _)| *name)
}

/// The request parameters of a call of `op` made with `form`: each member of its input
/// shape the form gives, under its model name (the event lower-camel-cases it), no
/// sensitive one. `Value::Null` for an operation without input members.
pub fn request_parameters(op: Operation, form: &Form) -> Value {
    let mut out = Map::new();
    for (name, kind) in input_members(op).unwrap_or_default() {
        if let Some(value) = member(form, name, *kind) {
            out.insert((*name).to_string(), value);
        }
    }
    Value::Object(out)
}

/// One member as the form gives it, or `None` when it is absent (or sensitive).
fn member(form: &Form, name: &str, kind: Kind) -> Option<Value> {
    match kind {
        Kind::Sensitive => None,
        Kind::Text => form.get(name).map(|v| Value::String(v.to_string())),
        Kind::Number => form.get(name).map(|v| match v.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(v.to_string()),
        }),
        Kind::Flag => form.get(name).map(|v| match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_string()),
        }),
        Kind::Texts => list(form, name, |prefix| form.get(prefix).map(|v| Value::String(v.into()))),
        Kind::Records(fields) => list(form, name, |prefix| {
            let record: Map<String, Value> = fields
                .iter()
                .filter_map(|f| {
                    let value = form.get(&format!("{prefix}.{f}"))?;
                    Some(((*f).to_string(), Value::String(value.to_string())))
                })
                .collect();
            (!record.is_empty()).then_some(Value::Object(record))
        }),
    }
}

/// `Name.member.1`, `Name.member.2`, ... up to the first gap, each read by `item` from its
/// prefix; an empty list (sent as `Name=`) is `[]`, an absent one `None`.
fn list(form: &Form, name: &str, item: impl Fn(&str) -> Option<Value>) -> Option<Value> {
    let items: Vec<Value> = (1..).map_while(|i| item(&format!("{name}.member.{i}"))).collect();
    if items.is_empty() && form.get(name).is_none() {
        return None;
    }
    Some(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(text: &str) -> Form {
        Form::parse(text.as_bytes())
    }

    #[test]
    fn every_query_operation_has_its_input_shape_and_no_other() {
        for op in IamOp::ALL.iter().copied().map(Operation::from) {
            assert!(input_members(op).is_some(), "{op:?}");
        }
        for op in StsOp::ALL.iter().copied().map(Operation::from) {
            assert!(input_members(op).is_some(), "{op:?}");
        }
        assert_eq!(INPUTS.len(), IamOp::ALL.len() + StsOp::ALL.len());
    }

    #[test]
    fn scalars_take_their_json_types_and_unknown_members_are_left_out() {
        let op = Operation::from(StsOp::AssumeRole);
        let f = form(
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr\
             &RoleSessionName=s&DurationSeconds=900&Extra=x&TokenCode=123456",
        );
        assert_eq!(
            request_parameters(op, &f),
            json!({"RoleArn": "arn:aws:iam::1:role/r", "RoleSessionName": "s", "DurationSeconds": 900})
        );
        // Not a number: recorded as sent (the call is refused, its event keeps what it asked).
        let f = form("DurationSeconds=soon");
        assert_eq!(request_parameters(op, &f), json!({"DurationSeconds": "soon"}));
        let f = form("PolicyArn=arn%3Ap&VersionId=v1&SetAsDefault=true");
        let op = Operation::from(IamOp::SetDefaultPolicyVersion);
        assert_eq!(request_parameters(op, &f), json!({"PolicyArn": "arn:p", "VersionId": "v1"}));
        let op = Operation::from(IamOp::CreatePolicyVersion);
        let f = form("PolicyArn=a&PolicyDocument=%7B%7D&SetAsDefault=true");
        assert_eq!(
            request_parameters(op, &f),
            json!({"PolicyArn": "a", "PolicyDocument": "{}", "SetAsDefault": true})
        );
    }

    #[test]
    fn lists_and_lists_of_structures_take_cloudtrails_shapes() {
        let op = Operation::from(StsOp::AssumeRole);
        let f = form(
            "RoleArn=r&Tags.member.1.Key=team&Tags.member.1.Value=a&Tags.member.2.Key=k\
             &Tags.member.2.Value=&TransitiveTagKeys.member.1=team&PolicyArns.member.1.arn=p\
             &Tags.member.4.Key=after-a-gap",
        );
        assert_eq!(
            request_parameters(op, &f),
            json!({
                "RoleArn": "r",
                "Tags": [{"Key": "team", "Value": "a"}, {"Key": "k", "Value": ""}],
                "TransitiveTagKeys": ["team"],
                "PolicyArns": [{"arn": "p"}],
            })
        );
        let op = Operation::from(IamOp::CreateOpenIDConnectProvider);
        let f = form("Url=https%3A%2F%2Fidp&ClientIDList=&ThumbprintList.member.1=ab");
        assert_eq!(
            request_parameters(op, &f),
            json!({"Url": "https://idp", "ClientIDList": [], "ThumbprintList": ["ab"]})
        );
    }

    #[test]
    fn sensitive_members_are_never_read() {
        let op = Operation::from(StsOp::AssumeRoleWithWebIdentity);
        let f = form("RoleArn=r&RoleSessionName=s&WebIdentityToken=eyJtoken");
        let params = request_parameters(op, &f);
        assert_eq!(params, json!({"RoleArn": "r", "RoleSessionName": "s"}));
        assert!(!params.to_string().contains("eyJtoken"));
        let names: Vec<_> = sensitive_members(op).collect();
        assert_eq!(names, ["WebIdentityToken"]);
        let names: Vec<_> = sensitive_members(Operation::Sts(StsOp::GetSessionToken)).collect();
        assert_eq!(names, ["TokenCode"]);
        assert_eq!(request_parameters(Operation::Sts(StsOp::GetCallerIdentity), &f), json!({}));
    }
}
