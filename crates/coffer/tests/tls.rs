//! The official Rust SDK over HTTPS: `coffer serve --dev --tls-self-signed` with the client
//! trusting only the printed certificate.

mod common;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use common::Server;

fn https_client(url: &str, ca_pem: Vec<u8>) -> aws_sdk_secretsmanager::Client {
    let trust = TrustStore::empty().with_pem_certificate(ca_pem);
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(TlsContext::builder().with_trust_store(trust).build().expect("a TLS context"))
        .build_https();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .http_client(http)
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

#[tokio::test]
async fn the_rust_sdk_works_over_https_with_the_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(
        &["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", data, "--tls-self-signed"],
        &[],
    );
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let cert = std::fs::read(dir.path().join("tls").join("cert.pem")).unwrap();
    let client = https_client(&server.url, cert);
    client.create_secret().name("over-https").secret_string("sealed").send().await.unwrap();
    let got = client.get_secret_value().secret_id("over-https").send().await.unwrap();
    assert_eq!(got.secret_string(), Some("sealed"));

    // A client that trusts only another certificate refuses the server.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let stranger = https_client(&server.url, other.cert.pem().into_bytes());
    assert!(stranger.list_secrets().send().await.is_err());
}
