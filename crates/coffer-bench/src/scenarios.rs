//! The benchmark's requests: secret names, seeding, and one request maker per scenario.
//!
//! Every target is seeded the same way through its API: a pool of secrets
//! holding a 1 KiB value for the read scenarios, a larger pool for writes (so
//! PutSecretValue never meets the 100-version quota of one secret), and
//! filler secrets up to the count ListSecrets is measured at.

use crate::client::Endpoint;
use crate::load::{self, MakeRequest, Seeded};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The versions one put-pool secret may receive in a run, below the quota of 100.
pub const VERSIONS_PER_PUT_SECRET: u64 = 90;

/// How long seeding may take before the run gives up.
pub const SEED_LIMIT: Duration = Duration::from_secs(3 * 3600);

/// The scenarios, in the order they run on each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Get,
    Describe,
    BatchGet,
    Update,
    Put,
    Mixed,
    ListSmallOne,
    ListOne,
    ListMany,
}

impl Scenario {
    /// The load scenarios run before the ListSecrets filler is seeded.
    pub const POOLED: [Scenario; 6] = [
        Scenario::Get,
        Scenario::Describe,
        Scenario::BatchGet,
        Scenario::Update,
        Scenario::Put,
        Scenario::Mixed,
    ];

    pub fn title(self, connections: usize, small: u64, big: u64) -> String {
        match self {
            Scenario::Get => "GetSecretValue, 1 KiB value".to_string(),
            Scenario::Describe => "DescribeSecret".to_string(),
            Scenario::BatchGet => "BatchGetSecretValue, 20 secrets".to_string(),
            Scenario::Update => "UpdateSecret, description only".to_string(),
            Scenario::Put => "PutSecretValue, 1 KiB, new version".to_string(),
            Scenario::Mixed => "Mixed: 90% Get, 10% Put".to_string(),
            Scenario::ListSmallOne => {
                format!("ListSecrets first page, {} stored, 1 conn", count_label(small))
            }
            Scenario::ListOne => {
                format!("ListSecrets first page, {} stored, 1 conn", count_label(big))
            }
            Scenario::ListMany => {
                format!("ListSecrets first page, {} stored, {connections} conns", count_label(big))
            }
        }
    }

    /// Parses a scenario name given on the command line.
    pub fn parse(name: &str) -> Option<Scenario> {
        Some(match name {
            "get" => Scenario::Get,
            "describe" => Scenario::Describe,
            "batch-get" => Scenario::BatchGet,
            "update" => Scenario::Update,
            "put" => Scenario::Put,
            "mixed" => Scenario::Mixed,
            "list" => Scenario::ListMany,
            _ => return None,
        })
    }
}

/// `100k`, `1M`, `2500`: a count for titles.
pub fn count_label(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

pub fn get_name(i: usize) -> String {
    format!("bench/get/{i:05}")
}

pub fn put_name(i: usize) -> String {
    format!("bench/put/{i:05}")
}

pub fn filler_name(i: u64) -> String {
    format!("bench/list/{i:07}")
}

/// A 1 KiB secret string: printable, needing no JSON escaping.
pub fn value_1k() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..1024).map(|i| ALPHABET[(i * 7 + i / 62) % ALPHABET.len()] as char).collect()
}

fn create_body(name: &str, value: &str) -> Vec<u8> {
    serde_json::json!({
        "Name": name,
        "SecretString": value,
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
    })
    .to_string()
    .into_bytes()
}

/// The secrets a run works on, and the writes it has spent on the put pool.
pub struct Pools {
    pub get: Arc<Vec<String>>,
    pub put: Arc<Vec<String>>,
    value: Arc<String>,
    /// PutSecretValue calls issued so far, across scenarios: call `j` goes to
    /// put-pool secret `j % len`, so no secret gets more than the budget allows.
    put_seq: Arc<AtomicU64>,
}

impl Pools {
    pub fn new(get: usize, put: usize) -> Pools {
        Pools {
            get: Arc::new((0..get).map(get_name).collect()),
            put: Arc::new((0..put).map(put_name).collect()),
            value: Arc::new(value_1k()),
            put_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many secrets the pools hold.
    pub fn len(&self) -> u64 {
        (self.get.len() + self.put.len()) as u64
    }

    /// PutSecretValue calls left before any put-pool secret would pass the budget.
    pub fn put_budget_left(&self) -> u64 {
        let budget = self.put.len() as u64 * VERSIONS_PER_PUT_SECRET;
        budget.saturating_sub(self.put_seq.load(Ordering::Relaxed))
    }

    /// Creates every pool secret with a 1 KiB value.
    pub async fn seed(&self, endpoint: &Endpoint, connections: usize) -> Result<Seeded, String> {
        let names: Arc<Vec<String>> =
            Arc::new(self.get.iter().chain(self.put.iter()).cloned().collect());
        let value = self.value.clone();
        let count = names.len() as u64;
        let make: MakeRequest =
            Arc::new(move |i| ("CreateSecret", create_body(&names[i as usize], &value)));
        load::seed(endpoint, connections, count, SEED_LIMIT, make).await
    }

    /// The request maker and count bound of a pooled scenario.
    pub fn maker(&self, scenario: Scenario) -> (MakeRequest, u64) {
        let get = self.get.clone();
        match scenario {
            Scenario::Get => (Arc::new(move |i| get_request(&get, i)), u64::MAX),
            Scenario::Describe => (
                Arc::new(move |i| {
                    let name = &get[(i % get.len() as u64) as usize];
                    ("DescribeSecret", format!(r#"{{"SecretId":"{name}"}}"#).into_bytes())
                }),
                u64::MAX,
            ),
            Scenario::BatchGet => (
                Arc::new(move |i| {
                    let ids: Vec<&String> =
                        (0..20).map(|k| &get[((i * 20 + k) % get.len() as u64) as usize]).collect();
                    let body = serde_json::json!({ "SecretIdList": ids });
                    ("BatchGetSecretValue", body.to_string().into_bytes())
                }),
                u64::MAX,
            ),
            Scenario::Update => {
                let put = self.put.clone();
                (
                    Arc::new(move |i| {
                        let name = &put[(i % put.len() as u64) as usize];
                        // The SDKs fill the idempotency token of UpdateSecret on every call.
                        let body = format!(
                            r#"{{"SecretId":"{name}","Description":"benchmark description {i}","ClientRequestToken":"{}"}}"#,
                            uuid::Uuid::new_v4()
                        );
                        ("UpdateSecret", body.into_bytes())
                    }),
                    u64::MAX,
                )
            }
            Scenario::Put => {
                let put = self.put_maker();
                // Two thirds of what is left: the mixed load that follows needs puts too, and
                // a fast server (`--dev`, ~30,000 puts/s) used the whole pool before it.
                (Arc::new(move |_| put()), self.put_budget_left() / 3 * 2)
            }
            Scenario::Mixed => {
                let put = self.put_maker();
                (
                    Arc::new(move |i| if i % 10 == 9 { put() } else { get_request(&get, i) }),
                    self.put_budget_left().saturating_mul(10),
                )
            }
            Scenario::ListSmallOne | Scenario::ListOne | Scenario::ListMany => {
                (Arc::new(|_| list_request()), u64::MAX)
            }
        }
    }

    fn put_maker(&self) -> impl Fn() -> (&'static str, Vec<u8>) + Send + Sync + 'static {
        let put = self.put.clone();
        let seq = self.put_seq.clone();
        let value = self.value.clone();
        move || {
            let j = seq.fetch_add(1, Ordering::Relaxed);
            let name = &put[(j % put.len() as u64) as usize];
            let body = format!(
                r#"{{"SecretId":"{name}","SecretString":"{value}","ClientRequestToken":"{}"}}"#,
                uuid::Uuid::new_v4()
            );
            ("PutSecretValue", body.into_bytes())
        }
    }
}

fn get_request(get: &[String], i: u64) -> (&'static str, Vec<u8>) {
    let name = &get[(i % get.len() as u64) as usize];
    ("GetSecretValue", format!(r#"{{"SecretId":"{name}"}}"#).into_bytes())
}

/// The first page of ListSecrets, 100 entries.
pub fn list_request() -> (&'static str, Vec<u8>) {
    ("ListSecrets", br#"{"MaxResults":100}"#.to_vec())
}

/// Creates filler secrets `from..to` (small values) so ListSecrets has that many to page through.
pub async fn seed_filler(
    endpoint: &Endpoint,
    connections: usize,
    from: u64,
    to: u64,
) -> Result<Seeded, String> {
    let make: MakeRequest = Arc::new(move |i| {
        let body = create_body(&filler_name(from + i), "filler-value-0123456789");
        ("CreateSecret", body)
    });
    load::seed(endpoint, connections, to.saturating_sub(from), SEED_LIMIT, make).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(request: (&'static str, Vec<u8>)) -> (&'static str, serde_json::Value) {
        (request.0, serde_json::from_slice(&request.1).unwrap())
    }

    #[test]
    fn the_value_is_one_kibibyte_of_plain_characters() {
        let v = value_1k();
        assert_eq!(v.len(), 1024);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn puts_spread_round_robin_over_the_put_pool_within_the_budget() {
        let pools = Pools::new(4, 3);
        assert_eq!(pools.put_budget_left(), 3 * VERSIONS_PER_PUT_SECRET);
        let (make, bound) = pools.maker(Scenario::Put);
        assert_eq!(bound, 3 * VERSIONS_PER_PUT_SECRET / 3 * 2);
        let ids: Vec<String> = (0..4)
            .map(|i| {
                let (op, body) = body_json(make(i));
                assert_eq!(op, "PutSecretValue");
                assert_eq!(body["SecretString"].as_str().unwrap().len(), 1024);
                assert!(body["ClientRequestToken"].as_str().unwrap().len() >= 32);
                body["SecretId"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids, [put_name(0), put_name(1), put_name(2), put_name(0)]);
        assert_eq!(pools.put_budget_left(), 3 * VERSIONS_PER_PUT_SECRET - 4);
        let (_, mixed_bound) = pools.maker(Scenario::Mixed);
        assert_eq!(mixed_bound, (3 * VERSIONS_PER_PUT_SECRET - 4) * 10);
    }

    #[test]
    fn the_mixed_load_sends_one_put_in_ten() {
        let pools = Pools::new(5, 2);
        let (make, _) = pools.maker(Scenario::Mixed);
        let ops: Vec<&str> = (0..20).map(|i| make(i).0).collect();
        assert_eq!(ops.iter().filter(|op| **op == "PutSecretValue").count(), 2);
        assert_eq!(ops.iter().filter(|op| **op == "GetSecretValue").count(), 18);
    }

    #[test]
    fn a_batch_names_twenty_pool_secrets_wrapping_around() {
        let pools = Pools::new(30, 1);
        let (make, _) = pools.maker(Scenario::BatchGet);
        let (op, body) = body_json(make(1));
        assert_eq!(op, "BatchGetSecretValue");
        let ids = body["SecretIdList"].as_array().unwrap();
        assert_eq!(ids.len(), 20);
        assert_eq!(ids[0], get_name(20));
        assert_eq!(ids[10], get_name(0));
    }

    #[test]
    fn counts_are_labelled_compactly() {
        assert_eq!(count_label(100_000), "100k");
        assert_eq!(count_label(1_000_000), "1M");
        assert_eq!(count_label(2256), "2256");
    }
}
