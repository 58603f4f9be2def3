//! Shared test support: start a real `coffer` process on an ephemeral port and
//! build official SDK clients for it.

#![allow(dead_code)]

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The master key every node of the PostgreSQL tests shares (base64 of 32 bytes).
pub const SHARED_MASTER_KEY: &str = "c2hhcmVkLW1hc3Rlci1rZXktZm9yLWFsbC1ub2RlcyE=";

/// The arguments of `coffer serve --dev` on the PostgreSQL database `url` with data
/// directory `dir`, an ephemeral port and `extra` after them: one node of the tests that
/// run several on one database.
pub fn postgres_node_args<'a>(url: &'a str, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    args
}

/// A running server, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// `coffer serve --dev` on 127.0.0.1 with an ephemeral port and an in-memory store.
    pub fn dev() -> Server {
        Server::start(&["serve", "--dev", "--listen", "127.0.0.1:0"], &[])
    }

    /// `coffer serve --dev` on a data directory (SQLite, encrypted at rest). `--dev`
    /// because these clients sign with made-up keys; `tests/auth.rs` covers serving with
    /// authentication.
    pub fn with_data_dir(dir: &Path) -> Server {
        Server::start(
            &[
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                dir.to_str().expect("utf-8 path"),
            ],
            &[],
        )
    }

    /// A node on the PostgreSQL database `url` (see [`postgres_node_args`]) with the
    /// shared master key.
    pub fn on_postgres(url: &str, dir: &Path, extra: &[&str]) -> Server {
        Server::start(
            &postgres_node_args(url, dir, extra),
            &[("COFFER_MASTER_KEY", SHARED_MASTER_KEY)],
        )
    }

    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with_stderr(args, env, Stdio::inherit())
    }

    /// Starts the server with its standard error sent to `stderr` (for example a file).
    pub fn start_with_stderr(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command.args(args).stdout(Stdio::piped()).stderr(stderr).env_remove("COFFER_MASTER_KEY");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("coffer starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                    sent = true;
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("coffer prints its address");
        Server { child, url }
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self) -> aws_sdk_secretsmanager::Client {
        client_for(&self.url, "AKIAIOSFODNN7EXAMPLE", "us-east-1")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SDK client for `url` with the given access key and region (any secret key).
pub fn client_for(url: &str, access_key: &str, region: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            access_key,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// A KMS SDK client for `url`, as the admin (`AKIAIOSFODNN7EXAMPLE`) in us-east-1.
pub fn kms_client(url: &str) -> aws_sdk_kms::Client {
    kms_client_in(url, "us-east-1")
}

/// A KMS SDK client for `url`, as the admin (`AKIAIOSFODNN7EXAMPLE`) in `region`.
pub fn kms_client_in(url: &str, region: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out
}

/// True when `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every version of a secret (deprecated ones included) with its labels.
pub async fn all_versions(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let page = client
            .list_secret_version_ids()
            .secret_id(secret)
            .include_deprecated(true)
            .max_results(100)
            .set_next_token(next)
            .send()
            .await
            .unwrap();
        for v in page.versions() {
            out.push((v.version_id().unwrap().to_string(), v.version_stages().to_vec()));
        }
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            return out;
        }
    }
}

/// How many versions carry `label`.
pub fn count_label(versions: &[(String, Vec<String>)], label: &str) -> usize {
    versions.iter().filter(|(_, stages)| stages.iter().any(|s| s == label)).count()
}
