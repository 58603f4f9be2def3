//! Two `coffer serve` nodes on one PostgreSQL database append their audit events to chains
//! of their own (one per node and scope, `<account>/<region>@<node>`), so no chain head is
//! written by both; `coffer audit verify` walks every chain, the scope's chain written
//! before chains were per node included, and names the chain that was tampered with.
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them these tests fail, never skip.

mod common;

use coffer_audit::chain::{self, EVENT_KIND, HEAD_KIND, Head, Record};
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, Store};
use std::process::{Command, Output};

const MASTER_KEY: &str = common::SHARED_MASTER_KEY;
const SCOPE: (&str, &str) = ("000000000000", "us-east-1");

fn server(url: &str, dir: &std::path::Path) -> common::Server {
    common::Server::on_postgres(url, dir, &[])
}

fn verify(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["audit", "verify", "--store", url])
        .env("COFFER_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap()
}

fn records(store: &PostgresStore, kind: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .read(&mut |tx| {
            out = tx.records(kind, prefix, None, 10_000)?;
            Ok(())
        })
        .unwrap();
    out
}

/// Writes three events into the scope's chain as a build before per-node chains did:
/// unkeyed, under `<account>/<region>/<u64::MAX - seq>`, with an unkeyed head (the chain
/// key, made when the first node starts, seals it).
fn old_format_chain(store: &PostgresStore) {
    let base = chain::chain_id(SCOPE.0, SCOPE.1);
    // Recent: older events would be archived by the first node's retention round.
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    store
        .write(&mut |tx| {
            let mut head: Option<Head> = None;
            for i in 1..=3u64 {
                let event = coffer_audit::event::Event {
                    event_version: "1.08".into(),
                    event_time: "2024-05-01T12:00:00Z".into(),
                    event_source: "secretsmanager.amazonaws.com".into(),
                    event_name: "CreateSecret".into(),
                    aws_region: SCOPE.1.into(),
                    event_id: format!("old-{i}"),
                    event_type: "AwsApiCall".into(),
                    recipient_account_id: SCOPE.0.into(),
                    event_category: "Management".into(),
                    user_identity: Default::default(),
                    source_ip_address: "127.0.0.1".into(),
                    user_agent: "old".into(),
                    error_code: None,
                    error_message: None,
                    request_parameters: serde_json::json!({"name": format!("old{i}")}),
                    response_elements: serde_json::Value::Null,
                    request_id: None,
                    read_only: false,
                    resources: vec![],
                    management_event: true,
                    session_credential_from_console: None,
                };
                let r = Record::seal(head.as_ref(), now_ms - 60_000 + i as i64, &event, None);
                head = Some(r.head());
                tx.put_record(EVENT_KIND, &chain::event_key(SCOPE.0, SCOPE.1, i), &r.to_bytes())?;
            }
            tx.put_record(HEAD_KIND, &base, &serde_json::to_vec(&head.clone().unwrap()).unwrap())
        })
        .unwrap();
}

#[test]
fn two_nodes_append_to_chains_of_their_own_and_verify_names_the_one_tampered_with() {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&database.url).unwrap();
    old_format_chain(&store);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(&database.url, dir.path()), server(&database.url, dir.path()));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (sm_a, sm_b) = (
            common::client_for(&a.url, "AKIAIOSFODNN7EXAMPLE", SCOPE.1),
            common::client_for(&b.url, "AKIAIOSFODNN7EXAMPLE", SCOPE.1),
        );
        sm_a.create_secret().name("db").secret_string("v").send().await.unwrap();
        // Both nodes loaded at once: reads through each.
        let mut calls = Vec::new();
        for i in 0..20 {
            let client = if i % 2 == 0 { sm_a.clone() } else { sm_b.clone() };
            calls.push(tokio::spawn(async move {
                client.get_secret_value().secret_id("db").send().await.unwrap();
                client.describe_secret().secret_id("db").send().await.unwrap();
            }));
        }
        for call in calls {
            call.await.unwrap();
        }
        sm_b.put_secret_value().secret_id("db").secret_string("w").send().await.unwrap();
    });
    drop((a, b));

    // Three chains in the scope: the old one (untouched since) and one per node, each with
    // its own head row; every event of a node chain lies in that chain's key range.
    let heads = records(&store, HEAD_KIND, "");
    let base = chain::chain_id(SCOPE.0, SCOPE.1);
    let ids: Vec<&str> = heads.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], base);
    let nodes: Vec<String> = ids[1..].iter().map(|id| id.to_string()).collect();
    for id in &nodes {
        assert!(chain::is_chain_of(id, SCOPE.0, SCOPE.1), "{id}");
        assert!(id.contains('@'), "{id}");
    }
    let old_head: Head = serde_json::from_slice(&heads[0].1).unwrap();
    assert_eq!(old_head.seq, 3, "the old chain is not appended to any more");
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|id| records(&store, EVENT_KIND, &chain::chain_event_prefix(id)).len())
        .collect();
    // Node A: CreateSecret and ten of each read; node B: ten of each and PutSecretValue.
    assert_eq!(per_node, [21, 21]);
    let all = records(&store, EVENT_KIND, "");
    assert_eq!(all.len(), 3 + 42);

    let intact = verify(&database.url);
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));
    assert!(stdout.contains("intact"), "{stdout}");
    assert!(stdout.contains("45 events in 3 chains"), "{stdout}");

    // Edit one event of the second node's chain.
    let victim = &nodes[1];
    let events = records(&store, EVENT_KIND, &chain::chain_event_prefix(victim));
    let (key, bytes) = events[5].clone();
    // Stored compact: decoded, changed in its JSON form and stored compact again.
    let json = Record::from_bytes(&bytes).unwrap().to_bytes();
    let forged = String::from_utf8(json).unwrap().replacen("\"db\"", "\"xx\"", 1);
    let forged = Record::from_bytes(forged.as_bytes()).unwrap().to_stored_bytes();
    assert_ne!(forged, bytes, "the forgery changes the stored record");
    store.write(&mut |tx| tx.put_record(EVENT_KIND, &key, &forged)).unwrap();
    let broken = verify(&database.url);
    assert!(!broken.status.success());
    let message = String::from_utf8_lossy(&broken.stderr).to_string();
    assert!(message.contains(&format!("chain {victim} ")), "{message}");
    assert!(message.contains("changed"), "{message}");
    assert!(!message.contains(&format!("chain {} ", nodes[0])), "{message}");

    // Drop the first node's newest event: its head no longer matches.
    let newest = records(&store, EVENT_KIND, &chain::chain_event_prefix(&nodes[0]))[0].0.clone();
    store.write(&mut |tx| tx.delete_record(EVENT_KIND, &newest)).unwrap();
    let message = String::from_utf8_lossy(&verify(&database.url).stderr).to_string();
    assert!(message.contains(&format!("chain {} ", nodes[0])), "{message}");
    assert!(message.contains(&format!("chain {victim} ")), "{message}");

    // An event of the old chain changed is named in it too.
    let old = chain::event_key(SCOPE.0, SCOPE.1, 2);
    let bytes = records(&store, EVENT_KIND, &old)[0].1.clone();
    let forged = String::from_utf8(bytes).unwrap().replace("old-2", "old-9");
    store.write(&mut |tx| tx.put_record(EVENT_KIND, &old, forged.as_bytes())).unwrap();
    let message = String::from_utf8_lossy(&verify(&database.url).stderr).to_string();
    assert!(message.contains(&format!("chain {base} event #2")), "{message}");
}
