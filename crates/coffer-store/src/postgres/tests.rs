//! Tests of the PostgreSQL store's internals that need no server: URL options and retry waits.

use std::time::Duration;

use tokio_postgres::config::SslMode;

use super::connect::{ConnectOptions, DEFAULT_POOL_SIZE, percent_decode};
use super::writer::backoff;
use crate::StoreError;

#[test]
fn url_options_of_ours_are_taken_out_before_tokio_postgres_parses_the_rest() {
    let options = ConnectOptions::parse(
        "postgres://coffer:s3cret@db.example:6543/vault?sslmode=disable&pool_max_size=3&connect_timeout=4",
    )
    .unwrap();
    assert_eq!(options.pool_size, 3);
    assert!(options.tls.is_none());
    assert_eq!(options.config.get_ssl_mode(), SslMode::Disable);
    assert_eq!(options.config.get_connect_timeout(), Some(&Duration::from_secs(4)));
    assert_eq!(options.config.get_application_name(), Some("coffer"));
    assert_eq!(options.description, "postgres://coffer@db.example:6543/vault");
    assert!(!options.description.contains("s3cret"));
}

#[test]
fn the_default_sslmode_prefers_tls_like_libpq() {
    let options = ConnectOptions::parse("postgres://u@h/db").unwrap();
    assert_eq!(options.config.get_ssl_mode(), SslMode::Prefer);
    assert!(options.tls.is_some());
    assert_eq!(options.pool_size, DEFAULT_POOL_SIZE);
}

#[test]
fn bad_urls_and_unsupported_options_are_refused_with_a_reason() {
    for (url, expected) in [
        ("mysql://u@h/db", "postgres://"),
        ("postgres://u@h/db?sslmode=sometimes", "unknown sslmode"),
        ("postgres://u@h/db?pool_max_size=0", "pool_max_size"),
        ("postgres://u@h/db?sslcert=/x.pem", "client certificates"),
        ("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem", "/nonexistent.pem"),
    ] {
        match ConnectOptions::parse(url) {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains(expected), "{url}: {message}")
            }
            Err(other) => panic!("{url}: unexpected error {other:?}"),
            Ok(_) => panic!("{url} was accepted"),
        }
    }
}

#[test]
fn percent_escapes_in_option_values_are_decoded() {
    assert_eq!(percent_decode("%2Ftmp%2Fca.pem").as_deref(), Some("/tmp/ca.pem"));
    assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    assert_eq!(percent_decode("%zz"), None);
    assert_eq!(percent_decode("%2"), None);
}

#[test]
fn retry_waits_grow_but_stay_capped() {
    for attempt in 1..200 {
        assert!(backoff(attempt) <= Duration::from_millis(64));
    }
}
