//! CloudTrail's LookupEvents over a scope's chains: lookup attributes, time range and
//! paging, newest event first.
//!
//! The caller supplies each chain's records page by page (newest first, strictly after a
//! key), so this module needs no store. Errors carry CloudTrail's exception names and
//! messages.

use crate::chain::{Record, chain_event_key, chain_event_prefix, seq_of_key};
use crate::listed::listed_resources;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The lookup attributes CloudTrail accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl Attribute {
    pub fn parse(key: &str) -> Option<Attribute> {
        Some(match key {
            "EventId" => Attribute::EventId,
            "EventName" => Attribute::EventName,
            "ReadOnly" => Attribute::ReadOnly,
            "Username" => Attribute::Username,
            "ResourceType" => Attribute::ResourceType,
            "ResourceName" => Attribute::ResourceName,
            "EventSource" => Attribute::EventSource,
            "AccessKeyId" => Attribute::AccessKeyId,
            _ => return None,
        })
    }
}

/// A LookupEvents failure: CloudTrail's exception name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    pub code: &'static str,
    pub message: String,
}

impl LookupError {
    fn new(code: &'static str, message: impl Into<String>) -> LookupError {
        LookupError { code, message: message.into() }
    }
}

/// How far before `StartTime` a scan goes on: events are stored in commit order and
/// stamped when their request began, so a slow request can sit slightly out of time order.
const TIME_SLACK_MS: i64 = 5 * 60 * 1000;
/// The largest page CloudTrail returns, and its default.
pub const MAX_RESULTS: usize = 50;

/// A validated LookupEvents request.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub attribute: Option<(Attribute, String)>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub max_results: usize,
    /// The sequence number to continue below (exclusive), from a NextToken of the
    /// scope's single chain.
    pub before_seq: Option<u64>,
    /// Where to continue in each chain (below that sequence number, exclusive), from a
    /// NextToken of a scope with several chains ([`run_chains`]). Chains it does not name
    /// are done.
    pub positions: Option<BTreeMap<String, u64>>,
}

impl Query {
    /// Validates the request's parts as CloudTrail does.
    pub fn new(
        attributes: &[(String, String)],
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<Query, LookupError> {
        if attributes.len() > 1 {
            return Err(LookupError::new(
                "InvalidLookupAttributesException",
                "You can specify only one lookup attribute.",
            ));
        }
        let attribute = match attributes.first() {
            None => None,
            Some((key, value)) => {
                let attr = Attribute::parse(key).ok_or_else(|| {
                    LookupError::new(
                        "InvalidLookupAttributesException",
                        format!("The lookup attribute key {key} is not valid."),
                    )
                })?;
                if value.is_empty() {
                    return Err(LookupError::new(
                        "InvalidLookupAttributesException",
                        "The lookup attribute value must not be empty.",
                    ));
                }
                Some((attr, value.clone()))
            }
        };
        if let (Some(s), Some(e)) = (start_ms, end_ms)
            && s > e
        {
            return Err(LookupError::new(
                "InvalidTimeRangeException",
                "The start time must be before the end time.",
            ));
        }
        let max_results = match max_results {
            None => MAX_RESULTS,
            Some(n) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(LookupError::new(
                    "InvalidMaxResultsException",
                    "MaxResults must be between 1 and 50.",
                ));
            }
        };
        let (mut before_seq, mut positions) = (None, None);
        match next_token.map(decode_token).transpose()? {
            None => {}
            Some(Position::Seq(seq)) => before_seq = Some(seq),
            Some(Position::Chains(map)) => positions = Some(map),
        }
        Ok(Query { attribute, start_ms, end_ms, max_results, before_seq, positions })
    }

    /// Whether a record passes the attribute and the time range.
    pub fn matches(&self, record: &Record) -> bool {
        if self.start_ms.is_some_and(|s| record.time_ms < s)
            || self.end_ms.is_some_and(|e| record.time_ms > e)
        {
            return false;
        }
        let Some((attr, want)) = &self.attribute else { return true };
        let Some(event) = record.typed_event() else { return false };
        match attr {
            Attribute::EventId => &event.event_id == want,
            Attribute::EventName => &event.event_name == want,
            Attribute::ReadOnly => event.read_only.to_string() == want.to_ascii_lowercase(),
            Attribute::Username => event.username().as_ref() == Some(want),
            Attribute::ResourceType => listed_resources(&event).iter().any(|r| &r.kind == want),
            Attribute::ResourceName => event.resource_names().contains(want),
            Attribute::EventSource => &event.event_source == want,
            Attribute::AccessKeyId => event.user_identity.access_key_id.as_ref() == Some(want),
        }
    }
}

fn encode_token(seq: u64) -> String {
    STANDARD.encode(format!("coffer-lookup:{seq}"))
}

/// Where a NextToken resumes: below a sequence number of the scope's single chain, or
/// below one in each of several chains.
enum Position {
    Seq(u64),
    Chains(BTreeMap<String, u64>),
}

const CHAINS_TOKEN: &str = "coffer-lookup-chains:";

fn encode_chains_token(positions: &BTreeMap<String, u64>) -> String {
    let json = serde_json::to_string(positions).expect("positions serialize");
    STANDARD.encode(format!("{CHAINS_TOKEN}{json}"))
}

fn decode_token(token: &str) -> Result<Position, LookupError> {
    let invalid = || LookupError::new("InvalidNextTokenException", "Invalid NextToken.");
    let bytes = STANDARD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    if let Some(json) = text.strip_prefix(CHAINS_TOKEN) {
        let map: BTreeMap<String, u64> = serde_json::from_str(json).map_err(|_| invalid())?;
        if map.is_empty() || map.len() > MAX_CHAINS_IN_TOKEN {
            return Err(invalid());
        }
        return Ok(Position::Chains(map));
    }
    text.strip_prefix("coffer-lookup:")
        .and_then(|n| n.parse().ok())
        .map(Position::Seq)
        .ok_or_else(invalid)
}

/// The most chains a NextToken may name. Only chains the scope has are read, whatever a
/// token names (see [`run_chains`]), so this bounds only the token's parse; it is far
/// above any real number of chains, so a scope with many never gets its own token refused.
const MAX_CHAINS_IN_TOKEN: usize = 1 << 16;

/// One entry of a LookupEvents answer, in CloudTrail's `Event` shape.
pub fn lookup_entry(record: &Record) -> Value {
    let event = record.typed_event();
    let mut entry = json!({
        "EventId": record.event_id().unwrap_or_default(),
        "EventTime": record.time_ms as f64 / 1000.0,
        "CloudTrailEvent": record.event.to_string(),
    });
    if let Some(e) = event {
        entry["EventName"] = e.event_name.clone().into();
        entry["EventSource"] = e.event_source.clone().into();
        entry["ReadOnly"] = e.read_only.to_string().into();
        if let Some(k) = &e.user_identity.access_key_id {
            entry["AccessKeyId"] = k.clone().into();
        }
        if let Some(u) = e.username() {
            entry["Username"] = u.into();
        }
        let resources: Vec<Value> = listed_resources(&e)
            .into_iter()
            .map(|r| json!({"ResourceType": r.kind, "ResourceName": r.name}))
            .collect();
        entry["Resources"] = Value::Array(resources);
    }
    entry
}

/// Stored records as `(key, bytes)` pairs.
pub type Batch = Vec<(String, Vec<u8>)>;

/// One page of a LookupEvents answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Value>,
    pub next_token: Option<String>,
}

/// How many stored records one LookupEvents call examines at most.
pub const SCAN_BUDGET: usize = 1000;
/// How many bytes of stored records one LookupEvents call reads at most (besides the
/// batch that crosses it): events are capped at a few KiB, but a trail written before
/// the caps may hold larger ones.
pub const SCAN_BYTES: usize = 8 * 1024 * 1024;
/// Records fetched at a time: small, so a batch of large old events stays small too.
const BATCH: usize = 50;

/// Runs `query` over every chain of the scope `account`/`region` (its own chain and
/// one per node that appended to it, as listed by their heads), merged newest first by
/// event time. `fetch(prefix, after, limit)` returns up to `limit` stored records under
/// `prefix` with keys strictly after `after`, in key order (newest event first).
///
/// With the scope's own chain alone (single-node stores, or no chain listed) and no
/// token naming several chains, the answer is the single chain's, with its own token
/// format (`coffer-lookup:<seq>`), which tokens given out before chains were per node
/// still use.
///
/// The work of one call is bounded: it examines at most [`SCAN_BUDGET`] records, and
/// fetches no more once it has read [`SCAN_BYTES`] bytes of them, then answers what it
/// found so far (possibly nothing) with a NextToken that resumes below the last record
/// examined, as CloudTrail may answer fewer events than MaxResults with a NextToken.
/// Without this, an attribute nothing matches read the caller's whole trail in one call.
pub fn run_chains<E, F>(
    account: &str,
    region: &str,
    chains: &[String],
    query: &Query,
    fetch: F,
) -> Result<Page, E>
where
    F: FnMut(&str, Option<&str>, usize) -> Result<Batch, E>,
{
    run_chains_with_budget(account, region, chains, query, SCAN_BUDGET, SCAN_BYTES, fetch)
}

/// One chain being read by [`run_chains`]: records fetched and not yet examined.
struct Cursor {
    chain: String,
    /// The key of the last record fetched.
    after: Option<String>,
    /// Below which sequence number the chain is still to be taken (`u64::MAX`: all).
    below: u64,
    fetched: std::collections::VecDeque<(String, Option<Record>)>,
    /// Nothing is left in the store after what was fetched.
    drained: bool,
}

impl Cursor {
    fn done(&self) -> bool {
        self.fetched.is_empty() && (self.drained || self.below <= 1)
    }

    /// The time of the next record, to merge by: unreadable records first (they are
    /// skipped at once).
    fn next_time(&self) -> Option<i64> {
        self.fetched.front().map(|(_, r)| r.as_ref().map_or(i64::MAX, |r| r.time_ms))
    }
}

/// [`run_chains`] with explicit bounds (tests use small ones).
pub fn run_chains_with_budget<E, F>(
    account: &str,
    region: &str,
    chains: &[String],
    query: &Query,
    budget: usize,
    byte_budget: usize,
    mut fetch: F,
) -> Result<Page, E>
where
    F: FnMut(&str, Option<&str>, usize) -> Result<Batch, E>,
{
    let base = crate::chain::chain_id(account, region);
    // The scope's own chain alone answers with its own token format.
    let single = query.positions.is_none() && chains.iter().all(|c| *c == base);
    let positions: BTreeMap<String, u64> = match &query.positions {
        // Only the scope's chains that exist: a token is the caller's input, and each
        // chain read costs a range read.
        Some(map) => map
            .iter()
            .filter(|(chain, _)| {
                crate::chain::is_chain_of(chain, account, region) && chains.contains(chain)
            })
            .map(|(chain, below)| (chain.clone(), *below))
            .collect(),
        // A token of the scope's single chain (and, with other chains there, one given
        // out before they were).
        None if single || query.before_seq.is_some() => {
            BTreeMap::from([(base, query.before_seq.unwrap_or(u64::MAX))])
        }
        None => chains.iter().map(|c| (c.clone(), u64::MAX)).collect(),
    };
    let mut cursors: Vec<Cursor> = positions
        .into_iter()
        .map(|(chain, below)| Cursor {
            after: (below != u64::MAX).then(|| chain_event_key(&chain, below)),
            chain,
            below,
            fetched: Default::default(),
            drained: false,
        })
        .collect();
    let token = |cursors: &[Cursor]| {
        if single {
            // As the single chain always answered: a token whenever older events may
            // remain, even when the batch just read was the chain's last.
            // (`u64::MAX`: nothing was examined yet, so no position to name.)
            return cursors
                .first()
                .filter(|c| (2..u64::MAX).contains(&c.below))
                .map(|c| encode_token(c.below));
        }
        let left: BTreeMap<String, u64> =
            cursors.iter().filter(|c| !c.done()).map(|c| (c.chain.clone(), c.below)).collect();
        (!left.is_empty()).then(|| encode_chains_token(&left))
    };
    let mut events = Vec::new();
    let (mut examined, mut bytes_read) = (0usize, 0usize);
    loop {
        if cursors.iter().all(Cursor::done) {
            return Ok(Page { events, next_token: None });
        }
        // Records already fetched are examined within the record budget; the byte budget
        // stops the next fetch (the batch that crosses it is read whole).
        let must_fetch = cursors.iter().any(|c| c.fetched.is_empty() && !c.done());
        if examined >= budget || (must_fetch && bytes_read >= byte_budget) {
            return Ok(Page { events, next_token: token(&cursors) });
        }
        // What is fetched and not yet examined stays within the budget however many
        // chains the scope has: each chain still to be read gets its share of it.
        let live = cursors.iter().filter(|c| !c.done()).count().max(1);
        let limit = ((budget - examined) / live).clamp(1, BATCH);
        for cursor in cursors.iter_mut() {
            if cursor.fetched.is_empty() && !cursor.done() {
                let prefix = chain_event_prefix(&cursor.chain);
                let batch = fetch(&prefix, cursor.after.as_deref(), limit)?;
                cursor.drained = batch.len() < limit;
                for (key, bytes) in batch {
                    cursor.after = Some(key.clone());
                    bytes_read = bytes_read.saturating_add(bytes.len());
                    cursor.fetched.push_back((key, Record::from_bytes(&bytes)));
                }
            }
        }
        // The chain whose next event is the newest.
        let Some(cursor) =
            cursors.iter_mut().filter(|c| !c.fetched.is_empty()).max_by_key(|c| c.next_time())
        else {
            return Ok(Page { events, next_token: None });
        };
        let (key, record) = cursor.fetched.pop_front().expect("a fetched record");
        examined += 1;
        cursor.below = seq_of_key(&key).unwrap_or(1);
        let Some(record) = record else { continue };
        if query.start_ms.is_some_and(|s| record.time_ms < s.saturating_sub(TIME_SLACK_MS)) {
            // This chain has nothing newer left; the others may.
            cursor.fetched.clear();
            cursor.below = 1;
            continue;
        }
        if !query.matches(&record) {
            continue;
        }
        events.push(lookup_entry(&record));
        if events.len() == query.max_results {
            return Ok(Page { events, next_token: token(&cursors) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Head, event_key};
    use crate::event::{Event, Resource, UserIdentity};
    use std::collections::BTreeMap;

    fn event(n: u64) -> Event {
        let (name, read_only, user) = match n % 3 {
            0 => ("GetSecretValue", true, "alice"),
            1 => ("CreateSecret", false, "bob"),
            _ => ("DeleteSecret", false, "alice"),
        };
        Event {
            event_version: "1.08".into(),
            user_identity: UserIdentity {
                kind: "IAMUser".into(),
                access_key_id: Some(format!("AKIA{user}")),
                user_name: Some(user.into()),
                ..Default::default()
            },
            event_time: "t".into(),
            event_source: "secretsmanager.amazonaws.com".into(),
            event_name: name.into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "t".into(),
            error_code: None,
            error_message: None,
            request_parameters: json!({"secretId": format!("s{}", n % 2)}),
            response_elements: Value::Null,
            request_id: None,
            event_id: format!("id-{n}"),
            read_only,
            resources: vec![Resource {
                arn: format!("arn:s{}", n % 2),
                account_id: None,
                kind: "AWS::SecretsManager::Secret".into(),
            }],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "1".into(),
            session_credential_from_console: None,
            event_category: "Management".into(),
        }
    }

    /// A store of `n` events one second apart (event n at n seconds).
    fn store(n: u64) -> BTreeMap<String, Vec<u8>> {
        let mut head: Option<Head> = None;
        let mut out = BTreeMap::new();
        for i in 1..=n {
            let r = Record::seal(head.as_ref(), i as i64 * 1000, &event(i), None);
            head = Some(r.head());
            out.insert(event_key("1", "us-east-1", i), r.to_bytes());
        }
        out
    }

    /// The answers of LookupEvents are the same, byte for byte, whether the store holds
    /// the compact form `seal_to_bytes` writes now or the JSON form it wrote before.
    #[test]
    fn lookup_answers_the_same_bytes_from_compact_and_json_records() {
        let key = crate::chain::ChainKey::new(&[3; 32]);
        let (mut compact, mut json) = (BTreeMap::new(), BTreeMap::new());
        let mut head: Option<Head> = None;
        for i in 1..=120u64 {
            let mut e = event(i);
            if i % 3 == 0 {
                e.error_code = Some("AccessDenied".into());
                e.error_message = Some(format!("quote \" é \u{1} </> \u{1F600} {i}"));
                e.request_parameters = json!({"secretId": "x", "n": -1.5, "z": [true, null, {}]});
                e.response_elements = json!({"arn": format!("arn:{i}"), "versionStages": []});
            }
            let (bytes, next) =
                crate::chain::seal_to_bytes(head.as_ref(), i as i64 * 1000, &e, Some(&key));
            head = Some(next);
            assert!(crate::stored::is_compact(&bytes));
            let k = event_key("1", "us-east-1", i);
            json.insert(k.clone(), Record::from_bytes(&bytes).unwrap().to_bytes());
            compact.insert(k, bytes);
        }
        let mut q = Query::new(&[], None, None, Some(7), None).unwrap();
        let mut pages = 0;
        loop {
            let (a, b) = (lookup(&compact, &q), lookup(&json, &q));
            assert_eq!(
                serde_json::to_string(&a.events).unwrap(),
                serde_json::to_string(&b.events).unwrap()
            );
            assert_eq!(a, b);
            pages += 1;
            let Some(token) = a.next_token else { break };
            q = Query::new(&[], None, None, Some(7), Some(&token)).unwrap();
        }
        assert_eq!(pages, 18);
    }

    fn lookup(store: &BTreeMap<String, Vec<u8>>, q: &Query) -> Page {
        run_chains("1", "us-east-1", &[], q, fetch_from(store)).unwrap()
    }

    fn ids(page: &Page) -> Vec<String> {
        page.events.iter().map(|e| e["EventId"].as_str().unwrap().to_string()).collect()
    }

    fn attr(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn events_come_newest_first_in_pages_until_none_are_left() {
        let s = store(450);
        let mut q = Query::new(&[], None, None, Some(50), None).unwrap();
        let mut seen = Vec::new();
        loop {
            let page = lookup(&s, &q);
            seen.extend(ids(&page));
            match page.next_token {
                Some(t) => q = Query::new(&[], None, None, Some(50), Some(&t)).unwrap(),
                None => break,
            }
        }
        let expected: Vec<String> = (1..=450).rev().map(|i| format!("id-{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn each_lookup_attribute_filters() {
        let s = store(30);
        let q = |k: &str, v: &str| Query::new(&attr(k, v), None, None, None, None).unwrap();
        assert_eq!(lookup(&s, &q("EventId", "id-7")).events.len(), 1);
        assert_eq!(lookup(&s, &q("EventName", "GetSecretValue")).events.len(), 10);
        assert_eq!(lookup(&s, &q("ReadOnly", "true")).events.len(), 10);
        assert_eq!(lookup(&s, &q("ReadOnly", "false")).events.len(), 20);
        assert_eq!(lookup(&s, &q("Username", "bob")).events.len(), 10);
        assert_eq!(lookup(&s, &q("AccessKeyId", "AKIAalice")).events.len(), 20);
        assert_eq!(lookup(&s, &q("ResourceName", "s0")).events.len(), 15);
        assert_eq!(lookup(&s, &q("ResourceName", "arn:s1")).events.len(), 15);
        assert_eq!(lookup(&s, &q("ResourceType", "AWS::SecretsManager::Secret")).events.len(), 30);
        assert_eq!(lookup(&s, &q("EventSource", "secretsmanager.amazonaws.com")).events.len(), 30);
        assert_eq!(lookup(&s, &q("EventSource", "kms.amazonaws.com")).events.len(), 0);
        let entry = &lookup(&s, &q("EventId", "id-7")).events[0];
        assert_eq!(entry["EventName"], "CreateSecret");
        assert_eq!(entry["Username"], "bob");
        assert_eq!(entry["ReadOnly"], "false");
        let inner: Value =
            serde_json::from_str(entry["CloudTrailEvent"].as_str().unwrap()).unwrap();
        assert_eq!(inner["eventID"], "id-7");
    }

    #[test]
    fn the_time_range_is_inclusive_and_paging_respects_it() {
        let s = store(100);
        let q = Query::new(&[], Some(10_000), Some(20_000), Some(5), None).unwrap();
        let first = lookup(&s, &q);
        assert_eq!(ids(&first), ["id-20", "id-19", "id-18", "id-17", "id-16"]);
        let token = first.next_token.clone().unwrap();
        let mut all = ids(&first);
        let mut q = Query::new(&[], Some(10_000), Some(20_000), Some(5), Some(&token)).unwrap();
        loop {
            let page = lookup(&s, &q);
            all.extend(ids(&page));
            let Some(t) = page.next_token else { break };
            q = Query::new(&[], Some(10_000), Some(20_000), Some(5), Some(&t)).unwrap();
        }
        assert_eq!(all.len(), 11);
        assert_eq!(all.last().unwrap(), "id-10");
    }

    #[test]
    fn a_lookup_examines_a_bounded_number_of_records_and_pages_on() {
        let s = store(450);
        let fetches = std::cell::Cell::new(0usize);
        let bounded = |q: &Query| {
            let mut from_store = fetch_from(&s);
            let fetch = |prefix: &str, after: Option<&str>, limit: usize| {
                fetches.set(fetches.get() + limit.min(450));
                from_store(prefix, after, limit)
            };
            run_chains_with_budget("1", "us-east-1", &[], q, 100, usize::MAX, fetch).unwrap()
        };
        // Nothing matches: each call reads at most the budget and says where to go on.
        let none = attr("EventName", "NoSuchOperation");
        let mut q = Query::new(&none, None, None, None, None).unwrap();
        let mut calls = 0;
        loop {
            fetches.set(0);
            let page = bounded(&q);
            calls += 1;
            assert!(page.events.is_empty());
            assert!(fetches.get() <= 100, "{} records examined", fetches.get());
            match page.next_token {
                Some(t) => q = Query::new(&none, None, None, None, Some(&t)).unwrap(),
                None => break,
            }
        }
        assert_eq!(calls, 5);
        // Sparse matches are all found across budget-limited pages, none twice.
        let some = attr("EventName", "GetSecretValue");
        let mut q = Query::new(&some, None, None, Some(50), None).unwrap();
        let mut seen = Vec::new();
        loop {
            let page = bounded(&q);
            seen.extend(ids(&page));
            match page.next_token {
                Some(t) => q = Query::new(&some, None, None, Some(50), Some(&t)).unwrap(),
                None => break,
            }
        }
        let expected: Vec<String> =
            (1..=450).rev().filter(|i| i % 3 == 0).map(|i| format!("id-{i}")).collect();
        assert_eq!(seen, expected);
        // A byte budget stops a scan of large records early too.
        let q = Query::new(&none, None, None, None, None).unwrap();
        let page =
            run_chains_with_budget("1", "us-east-1", &[], &q, 1000, 1, fetch_from(&s)).unwrap();
        assert!(page.next_token.is_some());
    }

    #[test]
    fn bad_requests_get_cloudtrail_exceptions() {
        let two = [attr("EventName", "a"), attr("Username", "b")].concat();
        assert_eq!(
            Query::new(&two, None, None, None, None).unwrap_err().code,
            "InvalidLookupAttributesException"
        );
        assert_eq!(
            Query::new(&attr("Colour", "red"), None, None, None, None).unwrap_err().code,
            "InvalidLookupAttributesException"
        );
        assert_eq!(
            Query::new(&[], Some(2), Some(1), None, None).unwrap_err().code,
            "InvalidTimeRangeException"
        );
        assert_eq!(
            Query::new(&[], None, None, Some(51), None).unwrap_err().code,
            "InvalidMaxResultsException"
        );
        assert_eq!(
            Query::new(&[], None, None, None, Some("garbage!")).unwrap_err().code,
            "InvalidNextTokenException"
        );
    }

    /// Three chains in one scope (the scope's own, older, and two nodes' interleaved in
    /// time), plus another scope's: `(store, event ids newest first)`.
    fn node_store() -> (BTreeMap<String, Vec<u8>>, Vec<String>, Vec<String>) {
        use crate::chain::node_chain_id;
        let mut out = BTreeMap::new();
        let mut all: Vec<(i64, String)> = Vec::new();
        let chains = [
            (node_chain_id("1", "us-east-1", None), 0..5i64, 1),
            (node_chain_id("1", "us-east-1", Some("a")), 5..40, 2),
            (node_chain_id("1", "us-east-1", Some("b")), 6..40, 3),
            (node_chain_id("1", "us-east-2", Some("a")), 0..40, 1),
        ];
        for (chain, times, step) in chains.iter().cloned() {
            let mut head: Option<Head> = None;
            for t in times.step_by(step) {
                let mut e = event(t as u64);
                e.event_id = format!("{chain}#{t}");
                let r = Record::seal(head.as_ref(), t * 1000, &e, None);
                head = Some(r.head());
                out.insert(crate::chain::chain_event_key(&chain, r.seq), r.to_bytes());
                if chain.starts_with("1/us-east-1") {
                    all.push((t, e.event_id.clone()));
                }
            }
        }
        all.sort_by(|a, b| b.cmp(a));
        let ids = all.into_iter().map(|(_, id)| id).collect();
        (out, chains[..3].iter().map(|c| c.0.clone()).collect(), ids)
    }

    fn fetch_from<'a>(
        s: &'a BTreeMap<String, Vec<u8>>,
    ) -> impl FnMut(&str, Option<&str>, usize) -> Result<Batch, ()> + 'a {
        move |prefix, after, limit| {
            Ok(s.iter()
                .filter(|(k, _)| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    #[test]
    fn several_chains_are_merged_newest_first_and_paged_without_loss_or_repeat() {
        let (s, chains, want) = node_store();
        for (max, budget) in [(50, 1000), (3, 1000), (7, 5), (50, 1)] {
            let mut got: Vec<String> = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..1000 {
                let q = Query::new(&[], None, None, Some(max), token.as_deref()).unwrap();
                let page = run_chains_with_budget(
                    "1",
                    "us-east-1",
                    &chains,
                    &q,
                    budget,
                    usize::MAX,
                    fetch_from(&s),
                )
                .unwrap();
                assert!(page.events.len() <= max as usize);
                got.extend(page.events.iter().map(|e| e["EventId"].as_str().unwrap().to_string()));
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
            assert_eq!(got, want, "max {max} budget {budget}");
        }
        // A filter and a time range apply across chains.
        let q = Query::new(&[], Some(30_000), Some(35_000), None, None).unwrap();
        let page = run_chains("1", "us-east-1", &chains, &q, fetch_from(&s)).unwrap();
        let times: Vec<f64> =
            page.events.iter().map(|e| e["EventTime"].as_f64().unwrap()).collect();
        // Node a wrote at odd seconds from 5, node b every third second from 6.
        assert_eq!(times, [35.0, 33.0, 33.0, 31.0, 30.0]);
        // A token naming another scope's chain reads nothing of it.
        let mut foreign = BTreeMap::new();
        foreign.insert(crate::chain::node_chain_id("1", "us-east-2", Some("a")), u64::MAX);
        let token = encode_chains_token(&foreign);
        let q = Query::new(&[], None, None, None, Some(&token)).unwrap();
        let page = run_chains("1", "us-east-1", &chains, &q, fetch_from(&s)).unwrap();
        assert!(page.events.is_empty());
    }

    /// A scope with its own chain alone answers with the single chain's token format, and
    /// a token of that format (as given out before chains were per node, spelled out here)
    /// pages on, in a single-chain scope and in one where node chains appeared since.
    #[test]
    fn a_single_chain_token_pages_on_in_the_format_it_always_had() {
        let s = store(7);
        let base = [crate::chain::chain_id("1", "us-east-1")];
        let page = |chains: &[String], s: &BTreeMap<String, Vec<u8>>, token: Option<&str>| {
            let q = Query::new(&[], None, None, Some(3), token).unwrap();
            run_chains("1", "us-east-1", chains, &q, fetch_from(s)).unwrap()
        };
        // "coffer-lookup:5", "coffer-lookup:2": below event 5, below event 2.
        let (below_5, below_2) = ("Y29mZmVyLWxvb2t1cDo1", "Y29mZmVyLWxvb2t1cDoy");
        for chains in [&base[..], &[]] {
            let first = page(chains, &s, None);
            assert_eq!(ids(&first), ["id-7", "id-6", "id-5"]);
            assert_eq!(first.next_token.as_deref(), Some(below_5));
            let second = page(chains, &s, Some(below_5));
            assert_eq!(ids(&second), ["id-4", "id-3", "id-2"]);
            assert_eq!(second.next_token.as_deref(), Some(below_2));
            let last = page(chains, &s, Some(below_2));
            assert_eq!(ids(&last), ["id-1"]);
            assert_eq!(last.next_token, None);
        }
        // Node chains appeared after the token was given out: it pages on through the
        // scope's own chain (events 4 to 0 at seq 5 to 1), the only one there was.
        let (nodes, chains, _) = node_store();
        let below_4 = "Y29mZmVyLWxvb2t1cDo0";
        let on = page(&chains, &nodes, Some(below_4));
        assert_eq!(ids(&on), ["1/us-east-1#2", "1/us-east-1#1", "1/us-east-1#0"]);
        assert_eq!(on.next_token, None);
    }
    /// Review 9: each chain fetched a batch of 50 records whatever the budget, so a scope
    /// with hundreds of chains read tens of thousands of records for one page; and a token
    /// naming chains that do not exist had each of them read.
    #[test]
    fn many_chains_stay_within_the_budget_and_a_token_reads_only_chains_that_exist() {
        use crate::chain::node_chain_id;
        let mut s = BTreeMap::new();
        let mut chains = vec![crate::chain::chain_id("1", "us-east-1")];
        for n in 0..300 {
            let chain = node_chain_id("1", "us-east-1", Some(&format!("n{n:03}")));
            let mut head: Option<Head> = None;
            for t in 0..10i64 {
                let r = Record::seal(head.as_ref(), t * 1000 + n, &event(t as u64), None);
                head = Some(r.head());
                s.insert(crate::chain::chain_event_key(&chain, r.seq), r.to_bytes());
            }
            chains.push(chain);
        }
        let (mut fetched, mut reads) = (0usize, 0usize);
        let q = Query::new(&[], None, None, Some(50), None).unwrap();
        let mut fetch = fetch_from(&s);
        let page = run_chains("1", "us-east-1", &chains, &q, |p, a, l| {
            let batch = fetch(p, a, l)?;
            fetched += batch.len();
            Ok::<_, ()>(batch)
        })
        .unwrap();
        assert_eq!(page.events.len(), 50);
        assert!(fetched <= SCAN_BUDGET + chains.len(), "{fetched} records fetched");
        // A token naming 1,000 chains of the scope that do not exist reads none of them.
        let forged: BTreeMap<String, u64> = (0..1000)
            .map(|n| (node_chain_id("1", "us-east-1", Some(&format!("ghost{n}"))), u64::MAX))
            .collect();
        let q = Query::new(&[], None, None, None, Some(&encode_chains_token(&forged))).unwrap();
        let page = run_chains("1", "us-east-1", &chains, &q, |p, a, l| {
            reads += 1;
            fetch_from(&s)(p, a, l)
        })
        .unwrap();
        assert!(page.events.is_empty());
        assert_eq!(reads, 0);
    }
}
