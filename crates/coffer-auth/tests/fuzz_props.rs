//! Hostile input to the SigV4 parser and the IAM policy parser and evaluator (issue 19,
//! item 4): the property-based half of the fuzzing, run by every `cargo test`. The
//! coverage-guided half is `fuzz/` (`scripts/fuzz.sh`). Nothing here may panic, and an
//! error's length stays bounded whatever the client sent: no message quotes more than
//! `MAX_ECHO_CHARS` characters of it (an unsupported algorithm's message once quoted a
//! header with no space in it twice; this property found it).

use coffer_auth::policy::{
    Context, Policy, PolicyKind, Request, evaluate, validate_resource_policy,
};
use coffer_auth::principal::Principal;
use coffer_auth::sigv4::{self, MAX_ECHO_CHARS};
use proptest::prelude::*;

/// The fixed wording around the echoed values in the longest message.
const WORDING: usize = 200;

/// The most characters of client text one message quotes (see the module comment).
const MOST_QUOTED: usize = MAX_ECHO_CHARS;

/// Authorization headers near the real shape, with the parts shuffled, repeated, cut short.
fn authorization() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "Credential=[A-Z0-9]{0,24}(/[0-9a-z-]{0,12}){0,6}",
        "SignedHeaders=[a-z;-]{0,40}",
        "Signature=[0-9a-f]{0,70}",
        "[A-Za-z=/;, ]{0,20}",
        ".{0,40}",
    ];
    (
        prop_oneof![Just("AWS4-HMAC-SHA256".to_owned()), "[A-Z0-9-]{0,20}"],
        prop::collection::vec(part, 0..6),
        prop_oneof![Just(", "), Just(","), Just(" "), Just(",,")],
    )
        .prop_map(|(algorithm, parts, sep)| format!("{algorithm} {}", parts.join(sep)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn authorization_headers_never_panic_and_errors_quote_little(header in authorization()) {
        if let Err(e) = sigv4::parse_authorization(&header) {
            prop_assert!(e.message().chars().count() <= MOST_QUOTED + WORDING, "{}", e.message());
        }
    }

    #[test]
    fn any_text_as_authorization_never_panics(header in ".{0,300}", long in 0usize..3) {
        let header = header.repeat(1 + long * 20);
        if let Err(e) = sigv4::parse_authorization(&header) {
            prop_assert!(e.message().chars().count() <= MOST_QUOTED + WORDING);
        }
    }

    #[test]
    fn any_path_and_query_make_a_canonical_request_piece(path in ".{0,200}", query in ".{0,200}") {
        let _ = sigv4::canonical_uri(&path);
        let canonical = sigv4::canonical_query(&query);
        // The canonical form is ASCII whatever came in (everything else is percent-encoded).
        prop_assert!(canonical.is_ascii(), "{canonical}");
    }
}

/// Policy documents near the grammar: real element names with values of every JSON type.
fn policy_document() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just(serde_json::json!("*")),
        Just(serde_json::json!("secretsmanager:*")),
        Just(serde_json::json!("secretsmanager:GetSecretValue")),
        Just(serde_json::json!("arn:aws:secretsmanager:us-east-1:111122223333:secret:*")),
        Just(serde_json::json!({"AWS": "arn:aws:iam::111122223333:root"})),
        Just(serde_json::json!({"AWS": ["*", 5, null]})),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!(17)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        ".{0,30}".prop_map(serde_json::Value::from),
    ];
    let value = prop_oneof![
        scalar.clone(),
        prop::collection::vec(scalar.clone(), 0..4).prop_map(serde_json::Value::from),
    ];
    let condition = prop::collection::btree_map(
        prop_oneof![
            Just("StringEquals".to_owned()),
            Just("StringLike".to_owned()),
            Just("ForAnyValue:StringEquals".to_owned()),
            Just("ForAllValues:StringLike".to_owned()),
            Just("StringEqualsIfExists".to_owned()),
            Just("Null".to_owned()),
            Just("Bool".to_owned()),
            Just("NumericLessThan".to_owned()),
            Just("DateGreaterThan".to_owned()),
            "[A-Za-z:]{0,20}",
        ],
        prop::collection::btree_map(
            prop_oneof![
                Just("aws:username".to_owned()),
                Just("secretsmanager:ResourceTag/env".to_owned()),
                Just("aws:PrincipalTag/team".to_owned()),
                ".{0,20}",
            ],
            value.clone(),
            0..3,
        ),
        0..3,
    );
    let statement = (
        prop::sample::subsequence(
            vec![
                "Sid",
                "Effect",
                "Action",
                "NotAction",
                "Resource",
                "NotResource",
                "Principal",
                "NotPrincipal",
                "Condition",
                "Bogus",
            ],
            0..=10,
        ),
        prop_oneof![Just("Allow"), Just("Deny"), Just("allow"), Just("")],
        value.clone(),
        value,
        condition,
    )
        .prop_map(|(keys, effect, v1, v2, condition)| {
            let mut statement = serde_json::Map::new();
            for (i, key) in keys.into_iter().enumerate() {
                let v = match key {
                    "Effect" => serde_json::json!(effect),
                    "Condition" => serde_json::to_value(&condition).unwrap(),
                    _ if i % 2 == 0 => v1.clone(),
                    _ => v2.clone(),
                };
                statement.insert(key.to_owned(), v);
            }
            serde_json::Value::Object(statement)
        });
    (
        prop_oneof![
            Just(Some("2012-10-17")),
            Just(Some("2008-10-17")),
            Just(None),
            Just(Some("1"))
        ],
        prop::collection::vec(statement, 0..4),
        any::<bool>(),
    )
        .prop_map(|(version, statements, one)| {
            let mut doc = serde_json::Map::new();
            if let Some(version) = version {
                doc.insert("Version".to_owned(), serde_json::json!(version));
            }
            let statements = match (one, statements.first()) {
                (true, Some(first)) => first.clone(),
                _ => serde_json::Value::Array(statements),
            };
            doc.insert("Statement".to_owned(), statements);
            serde_json::Value::Object(doc).to_string()
        })
}

fn decide(text: &str) {
    let principal = Principal::user("111122223333", "alice", "AIDAEXAMPLEEXAMPLE01");
    let mut context = Context::default();
    context.set("aws:username", "alice");
    context.set("secretsmanager:ResourceTag/env", "prod");
    context.set("secretsmanager:resourcetag/ENV", "dev");
    let request = Request {
        principal: &principal,
        action: "secretsmanager:GetSecretValue",
        resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf",
        resource_account: "111122223333",
        context: &context,
    };
    let identity: Vec<Policy> = Policy::parse(text, PolicyKind::Identity).into_iter().collect();
    let resource = Policy::parse(text, PolicyKind::Resource).ok();
    let _ = evaluate(&request, &identity, resource.as_ref());
    let _ = validate_resource_policy(text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn policy_documents_parse_and_evaluate_without_panicking(text in policy_document()) {
        decide(&text);
    }

    #[test]
    fn any_text_as_a_policy_never_panics(text in ".{0,200}") {
        decide(&text);
    }
}
