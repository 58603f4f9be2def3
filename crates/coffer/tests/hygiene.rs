//! Secret values never reach the server's logs, even at the most verbose level.

mod common;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::primitives::Blob;
use common::{Server, contains_bytes};
use std::process::Stdio;

#[tokio::test]
async fn secret_values_never_appear_in_trace_logs_or_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_with_stderr(
        &["serve", "--dev", "--listen", "127.0.0.1:0"],
        &[("COFFER_LOG", "trace")],
        Stdio::from(log),
    );
    let client = server.client();
    let marker = "log-marker-5d1e8b-secret";
    client.create_secret().name("logged").secret_string(marker).send().await.unwrap();
    client
        .put_secret_value()
        .secret_id("logged")
        .secret_binary(Blob::new(format!("{marker}-bin")))
        .send()
        .await
        .unwrap();
    client
        .get_secret_value()
        .secret_id("logged")
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .unwrap();
    // Failing calls carrying a value must not echo it either.
    let err = client
        .update_secret()
        .secret_id("logged")
        .secret_string(marker)
        .secret_binary(Blob::new(marker))
        .send()
        .await
        .unwrap_err();
    assert!(!err.message().unwrap_or("").contains(marker));
    let err = client
        .put_secret_value()
        .secret_id("missing")
        .secret_string(marker)
        .send()
        .await
        .unwrap_err();
    assert!(!err.message().unwrap_or("").contains(marker));
    let err = client
        .create_secret()
        .name("too-long")
        .secret_string(format!("{marker}{}", "x".repeat(65_536)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(!err.message().unwrap_or("").contains(marker));
    drop(client);
    server.kill();

    let logged = std::fs::read(&log_path).unwrap();
    assert!(!logged.is_empty(), "trace logging produced output");
    assert!(!contains_bytes(&logged, marker.as_bytes()), "a secret value reached the log");
}
