//! Temporary credentials through the official Rust SDK (issue 18): a role made and assumed
//! through the IAM and STS query APIs (signed here with coffer-auth's client side of SigV4),
//! then the SDK reads a secret with the session's key and token, and is refused without
//! the token or with a wrong one.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_auth::sigv4::{CredentialScope, RequestParts, authorization_header};
use common::Server;
use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

fn parse_credentials(text: &str) -> (String, String) {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

fn client(url: &str, id: &str, secret: &str, token: Option<&str>) -> Client {
    Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
            .credentials_provider(Credentials::new(
                id,
                secret,
                token.map(str::to_string),
                None,
                "test",
            ))
            .build(),
    )
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// POSTs a query-protocol call signed for `service` with `key`; returns (status, body).
fn query(
    url: &str,
    key: &(String, String),
    service: &str,
    params: &[(&str, &str)],
) -> (u16, String) {
    let body: String =
        params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
    let host = url.trim_start_matches("http://").to_string();
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let amz_date = coffer_auth::time::format_amz_date(secs);
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers: Vec<(&str, &[u8])> = vec![
        ("host", host.as_bytes()),
        ("content-type", content_type.as_bytes()),
        ("x-amz-date", amz_date.as_bytes()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let scope = CredentialScope {
        date: amz_date[..8].to_string(),
        region: "us-east-1".into(),
        service: service.into(),
    };
    let signed: Vec<String> = ["content-type", "host", "x-amz-date"].map(String::from).to_vec();
    let auth = authorization_header(&parts, &key.0, key.1.as_bytes(), &scope, &signed);
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nX-Amz-Date: {amz_date}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("<{name}> in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

#[tokio::test]
async fn the_rust_sdk_reads_a_secret_with_an_assumed_roles_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    let admin =
        parse_credentials(&std::fs::read_to_string(dir.path().join("admin-credentials")).unwrap());
    let url = server.url.clone();
    client(&url, &admin.0, &admin.1, None)
        .create_secret()
        .name("sdk-role-secret")
        .secret_string("sdk-role-value")
        .send()
        .await
        .unwrap();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
    let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let call = |service: &'static str, params: Vec<(&'static str, &'static str)>| {
        let (url, admin) = (url.clone(), admin.clone());
        move || query(&url, &admin, service, &params)
    };
    let v = ("Version", "2010-05-08");
    let created = tokio::task::spawn_blocking(call(
        "iam",
        vec![
            ("Action", "CreateRole"),
            v,
            ("RoleName", "sdk-reader"),
            ("AssumeRolePolicyDocument", trust),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(created.0, 200, "{}", created.1);
    let put = tokio::task::spawn_blocking(call(
        "iam",
        vec![
            ("Action", "PutRolePolicy"),
            v,
            ("RoleName", "sdk-reader"),
            ("PolicyName", "read"),
            ("PolicyDocument", read),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(put.0, 200, "{}", put.1);
    let (status, xml) = tokio::task::spawn_blocking(call(
        "sts",
        vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::000000000000:role/sdk-reader"),
            ("RoleSessionName", "sdk"),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(status, 200, "{xml}");
    let (id, secret, token) = (
        element(&xml, "AccessKeyId").to_string(),
        element(&xml, "SecretAccessKey").to_string(),
        element(&xml, "SessionToken").to_string(),
    );
    assert!(id.starts_with("ASIA"));
    let got = client(&url, &id, &secret, Some(&token))
        .get_secret_value()
        .secret_id("sdk-role-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(got.secret_string(), Some("sdk-role-value"));
    for bad in [None, Some("IQoWRONGTOKEN")] {
        let err = client(&url, &id, &secret, bad)
            .get_secret_value()
            .secret_id("sdk-role-secret")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("UnrecognizedClientException"), "{bad:?}");
    }
}
