//! The behaviour every [`Store`] must show, written once against the trait and run for each backend.
//!
//! Each case is a public function taking a fresh, empty store and panicking on
//! a failure. A backend's test file runs them all with
//! [`conformance_tests!`](crate::conformance_tests), which makes one `#[test]`
//! per case; [`run_all`] runs them in one go.

use std::collections::BTreeSet;

use coffer_core::model::{Millis, Scope, SecretMeta, Tag, VersionMeta};

// The plain secret and version every case starts from (`secret`, `version` take the
// scope and the creation time).
use crate::fixtures::{T0, arn, scope, secret_in as secret, version_at as version};
use crate::{
    Cursor, CursorKey, ListQuery, MemoryStore, ReadTxn, SealedValue, SnapshotItem, SortBy, Store,
    StoreError, StoreResult, WriteTxn, cursor_of,
};

/// A conformance case: takes a fresh, empty store and panics if the store misbehaves.
pub type Case = fn(&dyn Store);

/// Pairs each case with its name, so the two cannot drift apart.
macro_rules! case_list {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), $case as Case)),*]
    };
}

/// Every case with its name, in the order [`conformance_tests!`](crate::conformance_tests) lists them.
pub const CASES: &[(&str, Case)] = case_list![
    insert_then_lookup_by_name_and_arn,
    lookups_of_missing_things_return_none,
    same_name_in_other_account_or_region_is_another_secret,
    duplicate_name_in_a_scope_is_a_conflict,
    duplicate_arn_is_a_conflict,
    insert_assigns_increasing_seq_ignoring_the_given_one,
    secret_metadata_round_trips_every_field,
    update_secret_replaces_metadata_but_keeps_identity,
    update_of_a_missing_secret_fails,
    delete_secret_removes_it_and_frees_its_name,
    delete_of_a_missing_secret_is_not_an_error,
    delete_secret_cascades_to_its_versions,
    versions_come_back_oldest_first_with_metadata_round_tripped,
    versions_of_several_secrets_are_each_ones_versions_in_the_order_asked,
    labelled_versions_are_those_with_labels_and_the_one_asked,
    version_values_round_trip_per_secret,
    update_version_changes_metadata_but_not_value,
    update_of_a_missing_version_fails,
    replace_version_value_changes_only_that_value,
    duplicate_version_id_is_a_conflict_only_within_a_secret,
    insert_version_for_a_missing_secret_fails,
    delete_version_removes_only_that_version,
    failed_write_keeps_no_inserts,
    failed_write_undoes_updates_and_deletes,
    failed_write_returns_the_closures_error,
    write_that_recovers_from_a_conflict_commits_the_rest,
    a_write_sees_its_own_changes,
    visit_orders_by_every_sort_key_in_both_directions,
    visit_resumes_strictly_after_the_cursor,
    visit_pages_stay_correct_when_secrets_change_between_pages,
    visit_walks_long_listings_completely,
    visit_stops_when_the_visitor_says_so,
    visit_sees_only_its_scope,
    visit_follows_updated_sort_keys,
    visit_includes_secrets_scheduled_for_deletion,
    secrets_due_for_deletion_are_those_scheduled_up_to_now,
    wrapped_keys_round_trip_and_overwrite,
    settings_round_trip_and_overwrite,
    records_round_trip_overwrite_and_delete,
    records_list_by_prefix_in_key_order_with_paging,
    failed_write_undoes_record_changes,
    concurrent_writers_never_lose_an_insert,
    export_lists_everything_with_secrets_before_their_versions,
    export_then_import_elsewhere_reproduces_the_store,
    import_into_this_store_reproduces_the_snapshot,
    import_refuses_a_store_that_is_not_empty,
    import_refuses_a_store_holding_only_a_setting,
    failed_import_changes_nothing,
    a_streamed_import_refused_after_its_last_item_changes_nothing,
];

/// Runs every case, each on a store from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, case) in CASES {
        let store = make();
        tracing::debug!(case = name, store = %store.describe(), "running a conformance case");
        case(&*store);
    }
}

/// Expands to one `#[test]` per conformance case. The argument is an
/// expression evaluated afresh for each test; its value must implement
/// `AsRef<dyn Store>` (a `Box<dyn Store>` does, and a fixture that also holds
/// a temporary directory can).
///
/// ```
/// use coffer_store::{MemoryStore, Store};
///
/// coffer_store::conformance_tests!(Box::new(MemoryStore::new()) as Box<dyn Store>);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            insert_then_lookup_by_name_and_arn,
            lookups_of_missing_things_return_none,
            same_name_in_other_account_or_region_is_another_secret,
            duplicate_name_in_a_scope_is_a_conflict,
            duplicate_arn_is_a_conflict,
            insert_assigns_increasing_seq_ignoring_the_given_one,
            secret_metadata_round_trips_every_field,
            update_secret_replaces_metadata_but_keeps_identity,
            update_of_a_missing_secret_fails,
            delete_secret_removes_it_and_frees_its_name,
            delete_of_a_missing_secret_is_not_an_error,
            delete_secret_cascades_to_its_versions,
            versions_come_back_oldest_first_with_metadata_round_tripped,
            versions_of_several_secrets_are_each_ones_versions_in_the_order_asked,
            labelled_versions_are_those_with_labels_and_the_one_asked,
            version_values_round_trip_per_secret,
            update_version_changes_metadata_but_not_value,
            update_of_a_missing_version_fails,
            replace_version_value_changes_only_that_value,
            duplicate_version_id_is_a_conflict_only_within_a_secret,
            insert_version_for_a_missing_secret_fails,
            delete_version_removes_only_that_version,
            failed_write_keeps_no_inserts,
            failed_write_undoes_updates_and_deletes,
            failed_write_returns_the_closures_error,
            write_that_recovers_from_a_conflict_commits_the_rest,
            a_write_sees_its_own_changes,
            visit_orders_by_every_sort_key_in_both_directions,
            visit_resumes_strictly_after_the_cursor,
            visit_pages_stay_correct_when_secrets_change_between_pages,
            visit_walks_long_listings_completely,
            visit_stops_when_the_visitor_says_so,
            visit_sees_only_its_scope,
            visit_follows_updated_sort_keys,
            visit_includes_secrets_scheduled_for_deletion,
            secrets_due_for_deletion_are_those_scheduled_up_to_now,
            wrapped_keys_round_trip_and_overwrite,
            settings_round_trip_and_overwrite,
            records_round_trip_overwrite_and_delete,
            records_list_by_prefix_in_key_order_with_paging,
            failed_write_undoes_record_changes,
            concurrent_writers_never_lose_an_insert,
            export_lists_everything_with_secrets_before_their_versions,
            export_then_import_elsewhere_reproduces_the_store,
            import_into_this_store_reproduces_the_snapshot,
            import_refuses_a_store_that_is_not_empty,
            import_refuses_a_store_holding_only_a_setting,
            failed_import_changes_nothing,
            a_streamed_import_refused_after_its_last_item_changes_nothing,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = $make;
                let store: &dyn $crate::Store =
                    ::std::convert::AsRef::<dyn $crate::Store>::as_ref(&fixture);
                $crate::conformance::$case(store);
            }
        )*

        #[test]
        fn conformance_tests_cover_every_case() {
            let generated: &[&str] = &[$(stringify!($case)),*];
            let suite: ::std::vec::Vec<&str> =
                $crate::conformance::CASES.iter().map(|(name, _)| *name).collect();
            assert_eq!(generated, suite.as_slice());
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers.

const DAY: Millis = 86_400_000;

fn sealed(bytes: &[u8]) -> SealedValue {
    SealedValue(bytes.to_vec())
}

/// Runs a read and returns what `f` computed.
fn read<T>(store: &dyn Store, mut f: impl FnMut(&dyn ReadTxn) -> StoreResult<T>) -> T {
    let mut out = None;
    store
        .read(&mut |txn| {
            out = Some(f(txn)?);
            Ok(())
        })
        .expect("read transaction failed");
    out.expect("the read closure ran")
}

/// Runs a write and returns what `f` computed, or the error that abandoned it.
fn write<T: Send>(
    store: &dyn Store,
    mut f: impl FnMut(&mut dyn WriteTxn) -> StoreResult<T> + Send,
) -> StoreResult<T> {
    let mut out = None;
    store.write(&mut |txn| {
        out = Some(f(txn)?);
        Ok(())
    })?;
    Ok(out.expect("the write closure ran"))
}

/// Inserts `meta` and returns it as stored, with its assigned `seq`.
fn insert(store: &dyn Store, meta: &SecretMeta) -> SecretMeta {
    let seq = write(store, |txn| txn.insert_secret(meta)).expect("insert_secret failed");
    SecretMeta { seq, ..meta.clone() }
}

fn insert_version(store: &dyn Store, arn: &str, meta: &VersionMeta, value: &[u8]) {
    write(store, |txn| txn.insert_version(arn, meta, &sealed(value)))
        .expect("insert_version failed");
}

fn by_arn(store: &dyn Store, arn: &str) -> Option<SecretMeta> {
    read(store, |txn| txn.secret_by_arn(arn))
}

fn by_name(store: &dyn Store, scope: &Scope, name: &str) -> Option<SecretMeta> {
    read(store, |txn| txn.secret_by_name(scope, name))
}

fn versions(store: &dyn Store, arn: &str) -> Vec<VersionMeta> {
    read(store, |txn| txn.versions(arn))
}

fn value(store: &dyn Store, arn: &str, version_id: &str) -> Option<Vec<u8>> {
    read(store, |txn| txn.version_value(arn, version_id)).map(|v| v.0)
}

fn query(sort_by: SortBy, descending: bool, after: Option<Cursor>) -> ListQuery {
    ListQuery { sort_by, descending, after, expected: None }
}

/// Up to `limit` secrets of `scope` in the query's order.
fn page(store: &dyn Store, scope: &Scope, query: &ListQuery, limit: usize) -> Vec<SecretMeta> {
    read(store, |txn| {
        let mut seen = Vec::new();
        txn.visit_secrets(scope, query, &mut |meta| {
            seen.push(meta.clone());
            seen.len() < limit
        })?;
        Ok(seen)
    })
}

fn names(metas: &[SecretMeta]) -> Vec<String> {
    metas.iter().map(|m| m.name.clone()).collect()
}

/// Every secret of `scope`, fetched `page_size` at a time by resuming after
/// the last one seen, as ListSecrets does across requests.
fn all_pages(
    store: &dyn Store,
    scope: &Scope,
    sort_by: SortBy,
    descending: bool,
    page_size: usize,
) -> Vec<SecretMeta> {
    let mut all: Vec<SecretMeta> = Vec::new();
    loop {
        let after = all.last().map(|m| cursor_of(m, sort_by));
        let next = page(store, scope, &query(sort_by, descending, after), page_size);
        let done = next.len() < page_size;
        all.extend(next);
        if done {
            return all;
        }
        assert_no_endless_paging(&all);
    }
}

/// A store that fails to move past its cursor would page forever; stop it
/// once a walk has returned more secrets than any test creates.
fn assert_no_endless_paging(walked: &[SecretMeta]) {
    assert!(walked.len() <= 10_000, "paging does not advance past its cursor");
}

/// A total order matching the store's: the cursor key, then `seq`.
fn sort_position(meta: &SecretMeta, sort_by: SortBy) -> (Millis, String, i64) {
    let cursor = cursor_of(meta, sort_by);
    match cursor.key {
        CursorKey::Date(ms) => (ms, String::new(), cursor.seq),
        CursorKey::Name(name) => (0, name, cursor.seq),
    }
}

/// `metas` sorted as a listing with this order must return them.
fn expected_order(metas: &[SecretMeta], sort_by: SortBy, descending: bool) -> Vec<String> {
    let mut sorted = metas.to_vec();
    sorted.sort_by_key(|m| sort_position(m, sort_by));
    if descending {
        sorted.reverse();
    }
    names(&sorted)
}

const SORTS: [SortBy; 4] =
    [SortBy::CreatedDate, SortBy::LastAccessedDate, SortBy::LastChangedDate, SortBy::Name];

/// Twelve secrets with ties in every date, missing access dates, and names
/// whose byte order differs from their insertion order.
fn listing_fixture(store: &dyn Store, scope: &Scope) -> Vec<SecretMeta> {
    let specs: [(&str, Millis, Millis, Option<Millis>); 12] = [
        ("prod/db", T0 + 5, T0 + 50, Some(T0 + 3 * DAY)),
        ("alpha", T0 + 1, T0 + 10, None),
        ("Zeta", T0 + 5, T0 + 10, Some(T0 + DAY)),
        ("beta", T0 + 3, T0 + 70, Some(T0 + DAY)),
        ("alpha-2", T0 + 1, T0 + 10, None),
        ("prod/api", T0 + 9, T0 + 20, Some(T0 + 2 * DAY)),
        ("_underscore", T0 + 5, T0 + 50, None),
        ("a", T0 + 2, T0 + 90, Some(T0 + DAY)),
        ("Alpha", T0 + 1, T0 + 30, Some(T0 + 3 * DAY)),
        ("prod", T0 + 9, T0 + 20, None),
        ("9lives", T0 + 7, T0 + 60, Some(T0 + 2 * DAY)),
        ("b", T0 + 5, T0 + 10, Some(T0 + DAY)),
    ];
    specs
        .iter()
        .map(|(name, created, changed, accessed)| {
            let mut meta = secret(scope, name, *created);
            meta.last_changed_ms = *changed;
            meta.last_accessed_ms = *accessed;
            insert(store, &meta)
        })
        .collect()
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Secrets.

pub fn insert_then_lookup_by_name_and_arn(store: &dyn Store) {
    let stored = insert(store, &secret(&scope(), "db/password", T0));
    assert_eq!(by_name(store, &scope(), "db/password"), Some(stored.clone()));
    assert_eq!(by_arn(store, &stored.arn), Some(stored));
}

pub fn lookups_of_missing_things_return_none(store: &dyn Store) {
    let stored = insert(store, &secret(&scope(), "present", T0));
    assert_eq!(by_name(store, &scope(), "absent"), None);
    assert_eq!(by_name(store, &scope(), "Present"), None, "names are case-sensitive");
    assert_eq!(by_arn(store, &arn(&scope(), "absent")), None);
    assert_eq!(versions(store, &stored.arn), Vec::<VersionMeta>::new());
    assert_eq!(value(store, &stored.arn, "v1"), None);
    assert_eq!(read(store, |txn| txn.wrapped_key("absent")), None);
    assert_eq!(read(store, |txn| txn.setting("absent")), None);
}

pub fn same_name_in_other_account_or_region_is_another_secret(store: &dyn Store) {
    let home = scope();
    let other_account = Scope::new("222222222222", "us-east-1");
    let other_region = Scope::new("111111111111", "eu-west-1");
    let mut stored = Vec::new();
    for (i, s) in [&home, &other_account, &other_region].into_iter().enumerate() {
        let mut meta = secret(s, "shared", T0 + i as Millis);
        meta.description = Some(format!("copy {i}"));
        stored.push(insert(store, &meta));
    }
    for s in [&home, &other_account, &other_region] {
        let found = by_name(store, s, "shared").expect("each scope has its own secret");
        assert_eq!(&found.scope, s);
        assert_eq!(found.arn, arn(s, "shared"));
    }
    insert_version(store, &stored[0].arn, &version("v1", &["AWSCURRENT"], T0), b"home");
    assert_eq!(versions(store, &stored[1].arn), Vec::<VersionMeta>::new());
    assert_eq!(by_name(store, &Scope::new("333333333333", "us-east-1"), "shared"), None);
}

pub fn duplicate_name_in_a_scope_is_a_conflict(store: &dyn Store) {
    let first = insert(store, &secret(&scope(), "taken", T0));
    let mut again = secret(&scope(), "taken", T0 + 1);
    again.arn = arn(&scope(), "taken-other-suffix");
    assert_conflict(write(store, |txn| txn.insert_secret(&again)), "same name, new ARN");
    assert_eq!(by_arn(store, &again.arn), None);
    assert_eq!(by_name(store, &scope(), "taken"), Some(first));
}

pub fn duplicate_arn_is_a_conflict(store: &dyn Store) {
    let first = insert(store, &secret(&scope(), "one", T0));
    let mut again = secret(&scope(), "two", T0 + 1);
    again.arn = first.arn.clone();
    assert_conflict(write(store, |txn| txn.insert_secret(&again)), "new name, same ARN");
    assert_eq!(by_name(store, &scope(), "two"), None);
    assert_eq!(by_arn(store, &first.arn), Some(first));
}

pub fn insert_assigns_increasing_seq_ignoring_the_given_one(store: &dyn Store) {
    let mut seqs = Vec::new();
    for (i, given) in [1_000_000, -5, 0, 1_000_000].into_iter().enumerate() {
        let mut meta = secret(&scope(), &format!("s{i}"), T0);
        meta.seq = given;
        let stored = insert(store, &meta);
        assert_eq!(by_arn(store, &meta.arn).map(|m| m.seq), Some(stored.seq));
        seqs.push(stored.seq);
    }
    // A deleted secret's seq is not handed out again.
    write(store, |txn| txn.delete_secret(&arn(&scope(), "s3"))).unwrap();
    seqs.push(insert(store, &secret(&scope(), "s4", T0)).seq);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs must increase: {seqs:?}");
}

pub fn secret_metadata_round_trips_every_field(store: &dyn Store) {
    let full = SecretMeta {
        description: Some("with \"quotes\", unicode \u{e9}\u{4e2d} and\nnewlines".to_owned()),
        kms_key_id: Some("alias/custom".to_owned()),
        tags: Some(vec![
            Tag { key: "env".to_owned(), value: "prod".to_owned() },
            Tag { key: "empty".to_owned(), value: String::new() },
        ]),
        last_accessed_ms: Some(T0 + DAY),
        deletion_ms: Some(T0 + 7 * DAY),
        owning_service: Some("rds".to_owned()),
        secret_type: Some("partner".to_owned()),
        resource_policy: Some(r#"{"Version":"2012-10-17","Statement":[]}"#.to_owned()),
        rotation: None,
        replication: Default::default(),
        last_changed_ms: T0 + 42,
        ..secret(&scope(), "full", T0)
    };
    let stored = insert(store, &full);
    assert_eq!(by_arn(store, &full.arn), Some(stored));

    // `Some(vec![])` (every tag removed) is not `None` (never tagged).
    let untagged = insert(store, &SecretMeta { tags: Some(vec![]), ..secret(&scope(), "e", T0) });
    assert_eq!(by_arn(store, &untagged.arn).unwrap().tags, Some(vec![]));
    let never = insert(store, &secret(&scope(), "n", T0));
    assert_eq!(by_arn(store, &never.arn).unwrap().tags, None);
}

pub fn update_secret_replaces_metadata_but_keeps_identity(store: &dyn Store) {
    let stored = insert(store, &secret(&scope(), "app", T0));
    let mut changed = stored.clone();
    changed.description = Some("now described".to_owned());
    changed.last_changed_ms = T0 + 100;
    changed.last_accessed_ms = Some(T0 + DAY);
    changed.deletion_ms = Some(T0 + 30 * DAY);
    changed.tags = Some(vec![Tag { key: "k".to_owned(), value: "v".to_owned() }]);
    write(store, |txn| txn.update_secret(&changed)).unwrap();
    assert_eq!(by_arn(store, &stored.arn), Some(changed.clone()));
    assert_eq!(by_name(store, &scope(), "app"), Some(changed.clone()));

    // Name, scope and seq are fixed at insertion, whatever the update says.
    let mut renamed = changed.clone();
    renamed.name = "other".to_owned();
    renamed.scope = Scope::new("999999999999", "ap-south-1");
    renamed.seq = stored.seq + 1000;
    renamed.description = None;
    write(store, |txn| txn.update_secret(&renamed)).unwrap();
    let after = by_arn(store, &stored.arn).unwrap();
    assert_eq!(after.name, "app");
    assert_eq!(after.scope, scope());
    assert_eq!(after.seq, stored.seq);
    assert_eq!(after.description, None);
    assert_eq!(by_name(store, &scope(), "app").map(|m| m.arn), Some(stored.arn.clone()));
    assert_eq!(by_name(store, &renamed.scope, "other"), None);
}

pub fn update_of_a_missing_secret_fails(store: &dyn Store) {
    let ghost = secret(&scope(), "ghost", T0);
    assert!(write(store, |txn| txn.update_secret(&ghost)).is_err());
    assert_eq!(by_arn(store, &ghost.arn), None);
}

pub fn delete_secret_removes_it_and_frees_its_name(store: &dyn Store) {
    let doomed = insert(store, &secret(&scope(), "doomed", T0));
    let kept = insert(store, &secret(&scope(), "kept", T0));
    write(store, |txn| txn.delete_secret(&doomed.arn)).unwrap();
    assert_eq!(by_arn(store, &doomed.arn), None);
    assert_eq!(by_name(store, &scope(), "doomed"), None);
    assert_eq!(by_arn(store, &kept.arn), Some(kept));
    let everyone = page(store, &scope(), &query(SortBy::Name, false, None), usize::MAX);
    assert_eq!(names(&everyone), ["kept"]);

    let reborn = insert(store, &secret(&scope(), "doomed", T0 + 5));
    assert!(reborn.seq > doomed.seq);
    assert_eq!(by_name(store, &scope(), "doomed"), Some(reborn));
}

pub fn delete_of_a_missing_secret_is_not_an_error(store: &dyn Store) {
    write(store, |txn| txn.delete_secret(&arn(&scope(), "never-existed"))).unwrap();
    let stored = insert(store, &secret(&scope(), "x", T0));
    write(store, |txn| {
        txn.delete_secret(&stored.arn)?;
        txn.delete_secret(&stored.arn)
    })
    .unwrap();
    assert_eq!(by_arn(store, &stored.arn), None);
}

pub fn delete_secret_cascades_to_its_versions(store: &dyn Store) {
    let doomed = insert(store, &secret(&scope(), "doomed", T0));
    let kept = insert(store, &secret(&scope(), "kept", T0));
    insert_version(store, &doomed.arn, &version("v1", &["AWSPREVIOUS"], T0), b"one");
    insert_version(store, &doomed.arn, &version("v2", &["AWSCURRENT"], T0 + 1), b"two");
    insert_version(store, &kept.arn, &version("v1", &["AWSCURRENT"], T0), b"kept");
    write(store, |txn| txn.delete_secret(&doomed.arn)).unwrap();
    assert_eq!(versions(store, &doomed.arn), Vec::<VersionMeta>::new());
    assert_eq!(value(store, &doomed.arn, "v1"), None);
    assert_eq!(value(store, &doomed.arn, "v2"), None);

    // A secret recreated under the same ARN starts without versions.
    let reborn = insert(store, &secret(&scope(), "doomed", T0 + 9));
    assert_eq!(reborn.arn, doomed.arn);
    assert_eq!(versions(store, &reborn.arn), Vec::<VersionMeta>::new());
    assert_eq!(value(store, &kept.arn, "v1"), Some(b"kept".to_vec()));
}

// ---------------------------------------------------------------------------
// Versions.

pub fn versions_come_back_oldest_first_with_metadata_round_tripped(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "rotating", T0));
    // Ids are chosen so that neither their text nor their creation time gives
    // the insertion order: the store must keep the order versions arrived in.
    let mut expected = vec![
        VersionMeta {
            last_accessed_ms: Some(T0 + DAY),
            kms_key_id: Some("alias/old".to_owned()),
            ..version("zz-first", &[], T0 + 30)
        },
        version("mm-second", &["AWSPREVIOUS", "custom-label"], T0 + 10),
        version("aa-third", &["AWSCURRENT"], T0 + 20),
    ];
    for (i, v) in expected.iter().enumerate() {
        insert_version(store, &s.arn, v, format!("value {i}").as_bytes());
    }
    assert_eq!(versions(store, &s.arn), expected);

    let pending = version("00-fourth", &["AWSPENDING"], T0 + 5);
    insert_version(store, &s.arn, &pending, b"value 3");
    expected.push(pending);
    assert_eq!(versions(store, &s.arn), expected);
    assert!(versions(store, &s.arn)[0].is_deprecated());
    assert_eq!(
        versions(store, &s.arn)[1].stages,
        ["AWSPREVIOUS", "custom-label"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
}

/// What adding a version reads (`ReadTxn::labelled_versions`): the versions with labels
/// and the one whose id is asked (labelled or not), oldest first, and every version's count.
pub fn labelled_versions_are_those_with_labels_and_the_one_asked(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "put", T0));
    let bare = insert(store, &secret(&scope(), "bare", T0));
    for (id, stages) in [
        ("v1", &[][..]),
        ("v2", &["AWSPREVIOUS"][..]),
        ("v3", &[][..]),
        ("v4", &["AWSCURRENT", "custom"][..]),
        ("v5", &[][..]),
    ] {
        insert_version(store, &s.arn, &version(id, stages, T0), id.as_bytes());
    }
    let read = |arn: &str, also: &str| {
        let mut out = None;
        store
            .read(&mut |tx| {
                let (kept, count) = tx.labelled_versions(arn, also)?;
                out = Some((kept, count));
                Ok(())
            })
            .unwrap();
        out.unwrap()
    };
    let ids = |arn: &str, also: &str| {
        let (kept, count) = read(arn, also);
        (kept.into_iter().map(|v| v.version_id).collect::<Vec<_>>(), count)
    };
    let want = |ids: &[&str], count: usize| (ids.iter().map(|id| id.to_string()).collect(), count);
    assert_eq!(ids(&s.arn, "new"), want(&["v2", "v4"], 5));
    assert_eq!(ids(&s.arn, "v3"), want(&["v2", "v3", "v4"], 5));
    assert_eq!(ids(&s.arn, "v4"), want(&["v2", "v4"], 5));
    assert_eq!(ids(&bare.arn, "new"), want(&[], 0));
    assert_eq!(ids("arn:missing", "new"), want(&[], 0));
    let expected: BTreeSet<String> =
        ["AWSCURRENT", "custom"].iter().map(|s| s.to_string()).collect();
    assert_eq!(read(&s.arn, "new").0.pop().map(|v| v.stages), Some(expected));

    // In a write (a store may answer there otherwise: SQLite's writer, from SQL), before
    // and after the write moves labels and adds a version, which comes last.
    let in_write = write(store, |tx| {
        let first = tx.labelled_versions(&s.arn, "v6")?;
        tx.update_version(&s.arn, &version("v2", &[], T0))?;
        tx.update_version(&s.arn, &version("v3", &["custom"], T0))?;
        tx.update_version(&s.arn, &version("v4", &["AWSPREVIOUS"], T0))?;
        tx.insert_version(&s.arn, &version("v6", &["AWSCURRENT"], T0), &sealed(b"v6"))?;
        let second = tx.labelled_versions(&s.arn, "v1")?;
        Ok((first, second))
    })
    .unwrap();
    let names = |(kept, count): (Vec<VersionMeta>, usize)| {
        (kept.into_iter().map(|v| (v.version_id, v.stages)).collect::<Vec<_>>(), count)
    };
    let labels = |ids: &[(&str, &[&str])], count: usize| {
        let kept = ids
            .iter()
            .map(|(id, stages)| (id.to_string(), stages.iter().map(|s| s.to_string()).collect()))
            .collect::<Vec<(String, BTreeSet<String>)>>();
        (kept, count)
    };
    assert_eq!(
        names(in_write.0),
        labels(&[("v2", &["AWSPREVIOUS"]), ("v4", &["AWSCURRENT", "custom"])], 5)
    );
    let after = labels(
        &[("v1", &[]), ("v3", &["custom"]), ("v4", &["AWSPREVIOUS"]), ("v6", &["AWSCURRENT"])],
        6,
    );
    assert_eq!(names(in_write.1), after);
    assert_eq!(names(read(&s.arn, "v1")), after);
    // Versions added after one was removed, in one write and in the next, still come in
    // the order they were added.
    write(store, |tx| {
        tx.labelled_versions(&s.arn, "v7")?;
        tx.delete_version(&s.arn, "v6")?;
        tx.insert_version(&s.arn, &version("v7", &["AWSCURRENT"], T0), &sealed(b"v7"))
    })
    .unwrap();
    write(store, |tx| {
        tx.labelled_versions(&s.arn, "v0")?;
        tx.insert_version(&s.arn, &version("v0", &[], T0), &sealed(b"v0"))
    })
    .unwrap();
    let every: Vec<String> = versions(store, &s.arn).into_iter().map(|v| v.version_id).collect();
    assert_eq!(every, ["v1", "v2", "v3", "v4", "v5", "v7", "v0"]);
    assert_eq!(ids(&s.arn, "new"), want(&["v3", "v4", "v7"], 7));
}

pub fn versions_of_several_secrets_are_each_ones_versions_in_the_order_asked(store: &dyn Store) {
    let a = insert(store, &secret(&scope(), "a", T0));
    let b = insert(store, &secret(&scope(), "b", T0));
    let bare = insert(store, &secret(&scope(), "no-versions", T0));
    insert_version(store, &a.arn, &version("zz-first", &[], T0 + 9), b"1");
    insert_version(store, &b.arn, &version("b1", &["AWSCURRENT"], T0), b"2");
    insert_version(store, &a.arn, &version("aa-second", &["AWSCURRENT"], T0 + 1), b"3");
    let arns = [b.arn.as_str(), "arn:missing", a.arn.as_str(), bare.arn.as_str(), b.arn.as_str()];
    let found = read(store, |txn| txn.versions_of(&arns));
    let each: Vec<Vec<VersionMeta>> = arns.iter().map(|arn| versions(store, arn)).collect();
    assert_eq!(found, each);
    assert_eq!(
        found[2].iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
        ["zz-first", "aa-second"]
    );
    assert!(found[1].is_empty() && found[3].is_empty());
    assert_eq!(read(store, |txn| txn.versions_of(&[])), Vec::<Vec<VersionMeta>>::new());
}

pub fn version_values_round_trip_per_secret(store: &dyn Store) {
    let a = insert(store, &secret(&scope(), "a", T0));
    let b = insert(store, &secret(&scope(), "b", T0));
    let binary: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    insert_version(store, &a.arn, &version("v1", &["AWSCURRENT"], T0), &binary);
    insert_version(store, &b.arn, &version("v1", &["AWSCURRENT"], T0), b"b's value");
    insert_version(store, &b.arn, &version("v2", &[], T0), b"");
    assert_eq!(value(store, &a.arn, "v1"), Some(binary));
    assert_eq!(value(store, &b.arn, "v1"), Some(b"b's value".to_vec()));
    assert_eq!(value(store, &b.arn, "v2"), Some(Vec::new()));
    assert_eq!(value(store, &a.arn, "v2"), None);
}

pub fn update_version_changes_metadata_but_not_value(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "s", T0));
    insert_version(store, &s.arn, &version("v1", &["AWSCURRENT"], T0), b"one");
    insert_version(store, &s.arn, &version("v2", &["AWSPENDING"], T0 + 1), b"two");
    let promoted = VersionMeta {
        last_accessed_ms: Some(T0 + DAY),
        kms_key_id: Some("alias/new".to_owned()),
        ..version("v2", &["AWSCURRENT"], T0 + 1)
    };
    let demoted = version("v1", &["AWSPREVIOUS"], T0);
    write(store, |txn| {
        txn.update_version(&s.arn, &promoted)?;
        txn.update_version(&s.arn, &demoted)
    })
    .unwrap();
    assert_eq!(versions(store, &s.arn), [demoted, promoted.clone()]);
    assert_eq!(value(store, &s.arn, "v1"), Some(b"one".to_vec()));
    assert_eq!(value(store, &s.arn, "v2"), Some(b"two".to_vec()));

    // Updating to no labels deprecates the version but keeps it and its place.
    write(store, |txn| txn.update_version(&s.arn, &version("v1", &[], T0))).unwrap();
    assert_eq!(versions(store, &s.arn), [version("v1", &[], T0), promoted]);
}

pub fn update_of_a_missing_version_fails(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "s", T0));
    insert_version(store, &s.arn, &version("v1", &["AWSCURRENT"], T0), b"one");
    let missing = version("v9", &["AWSCURRENT"], T0);
    assert!(write(store, |txn| txn.update_version(&s.arn, &missing)).is_err());
    let elsewhere = arn(&scope(), "other");
    assert!(write(store, |txn| txn.update_version(&elsewhere, &missing)).is_err());
    assert!(write(store, |txn| txn.replace_version_value(&s.arn, "v9", &sealed(b"x"))).is_err());
    assert_eq!(versions(store, &s.arn), [version("v1", &["AWSCURRENT"], T0)]);
}

pub fn replace_version_value_changes_only_that_value(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "s", T0));
    let other = insert(store, &secret(&scope(), "other", T0));
    let v1 = version("v1", &["AWSPREVIOUS"], T0);
    let v2 = version("v2", &["AWSCURRENT"], T0 + 1);
    insert_version(store, &s.arn, &v1, b"old one");
    insert_version(store, &s.arn, &v2, b"old two");
    insert_version(store, &other.arn, &v1, b"other one");
    write(store, |txn| txn.replace_version_value(&s.arn, "v1", &sealed(b"resealed one"))).unwrap();
    assert_eq!(value(store, &s.arn, "v1"), Some(b"resealed one".to_vec()));
    assert_eq!(value(store, &s.arn, "v2"), Some(b"old two".to_vec()));
    assert_eq!(value(store, &other.arn, "v1"), Some(b"other one".to_vec()));
    assert_eq!(versions(store, &s.arn), [v1, v2]);
}

pub fn duplicate_version_id_is_a_conflict_only_within_a_secret(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "s", T0));
    let t = insert(store, &secret(&scope(), "t", T0));
    let v1 = version("v1", &["AWSCURRENT"], T0);
    insert_version(store, &s.arn, &v1, b"first");
    let again = version("v1", &["AWSPENDING"], T0 + 1);
    assert_conflict(
        write(store, |txn| txn.insert_version(&s.arn, &again, &sealed(b"second"))),
        "reused version id",
    );
    assert_eq!(versions(store, &s.arn), [v1]);
    assert_eq!(value(store, &s.arn, "v1"), Some(b"first".to_vec()));
    // Version ids are scoped to their secret.
    insert_version(store, &t.arn, &again, b"t's");
    assert_eq!(versions(store, &t.arn), [again]);
}

pub fn insert_version_for_a_missing_secret_fails(store: &dyn Store) {
    let ghost = arn(&scope(), "ghost");
    let result = write(store, |txn| {
        txn.insert_version(&ghost, &version("v1", &["AWSCURRENT"], T0), &sealed(b"x"))
    });
    assert!(result.is_err(), "got {result:?}");
    assert_eq!(versions(store, &ghost), Vec::<VersionMeta>::new());
}

pub fn delete_version_removes_only_that_version(store: &dyn Store) {
    let s = insert(store, &secret(&scope(), "s", T0));
    let (v1, v2, v3) = (version("v1", &[], T0), version("v2", &[], T0), version("v3", &[], T0));
    for v in [&v1, &v2, &v3] {
        insert_version(store, &s.arn, v, v.version_id.as_bytes());
    }
    write(store, |txn| txn.delete_version(&s.arn, "v2")).unwrap();
    assert_eq!(versions(store, &s.arn), [v1.clone(), v3.clone()]);
    assert_eq!(value(store, &s.arn, "v2"), None);
    assert_eq!(value(store, &s.arn, "v3"), Some(b"v3".to_vec()));
    // Deleting what is not there is a no-op, like delete_secret.
    write(store, |txn| txn.delete_version(&s.arn, "v2")).unwrap();
    // A new version goes after the survivors even though an older one was removed.
    let v4 = version("v4", &["AWSCURRENT"], T0);
    insert_version(store, &s.arn, &v4, b"v4");
    assert_eq!(versions(store, &s.arn), [v1, v3, v4]);
    assert!(by_arn(store, &s.arn).is_some());
}

// ---------------------------------------------------------------------------
// Transactions.

pub fn failed_write_keeps_no_inserts(store: &dyn Store) {
    let existing = insert(store, &secret(&scope(), "existing", T0));
    let before_seq = existing.seq;
    let result = write(store, |txn| {
        let new = secret(&scope(), "new", T0);
        txn.insert_secret(&new)?;
        txn.insert_version(&new.arn, &version("v1", &["AWSCURRENT"], T0), &sealed(b"n"))?;
        txn.insert_version(&existing.arn, &version("v1", &["AWSCURRENT"], T0), &sealed(b"e"))?;
        txn.put_wrapped_key("k-new", b"wrapped")?;
        txn.put_setting("s-new", b"setting")?;
        Err::<(), _>(StoreError::Aborted)
    });
    assert!(matches!(result, Err(StoreError::Aborted)), "got {result:?}");
    assert_eq!(by_name(store, &scope(), "new"), None);
    assert_eq!(by_arn(store, &arn(&scope(), "new")), None);
    assert_eq!(versions(store, &arn(&scope(), "new")), Vec::<VersionMeta>::new());
    assert_eq!(versions(store, &existing.arn), Vec::<VersionMeta>::new());
    assert_eq!(value(store, &existing.arn, "v1"), None);
    assert_eq!(read(store, |txn| txn.wrapped_key("k-new")), None);
    assert_eq!(read(store, |txn| txn.setting("s-new")), None);
    let listed = page(store, &scope(), &query(SortBy::CreatedDate, false, None), usize::MAX);
    assert_eq!(names(&listed), ["existing"]);
    // The name is free again, and the next secret still sorts after the old one.
    let new = insert(store, &secret(&scope(), "new", T0));
    assert!(new.seq > before_seq);
}

pub fn failed_write_undoes_updates_and_deletes(store: &dyn Store) {
    let a = insert(store, &secret(&scope(), "a", T0));
    let b = insert(store, &secret(&scope(), "b", T0 + 1));
    let c = insert(store, &secret(&scope(), "c", T0 + 2));
    let va = [version("v1", &["AWSPREVIOUS"], T0), version("v2", &["AWSCURRENT"], T0 + 1)];
    for (i, v) in va.iter().enumerate() {
        insert_version(store, &a.arn, v, format!("a{i}").as_bytes());
    }
    insert_version(store, &b.arn, &version("v1", &["AWSCURRENT"], T0), b"b0");
    write(store, |txn| {
        txn.put_wrapped_key("key", b"original key")?;
        txn.put_setting("setting", b"original setting")
    })
    .unwrap();

    let result = write(store, |txn| {
        let mut changed = a.clone();
        changed.description = Some("changed".to_owned());
        changed.last_accessed_ms = Some(T0 + 5 * DAY);
        changed.created_ms = T0 + 1000;
        txn.update_secret(&changed)?;
        txn.update_version(&a.arn, &version("v1", &[], T0))?;
        txn.replace_version_value(&a.arn, "v2", &sealed(b"resealed"))?;
        txn.delete_version(&a.arn, "v1")?;
        txn.insert_version(&a.arn, &version("v3", &["AWSPENDING"], T0 + 2), &sealed(b"a2"))?;
        txn.delete_secret(&b.arn)?;
        txn.update_secret(&SecretMeta { deletion_ms: Some(T0), ..c.clone() })?;
        txn.delete_secret(&c.arn)?;
        txn.insert_secret(&secret(&scope(), "b", T0 + 7))?;
        txn.put_wrapped_key("key", b"replaced key")?;
        txn.put_setting("setting", b"replaced setting")?;
        Err::<(), _>(StoreError::Aborted)
    });
    assert!(matches!(result, Err(StoreError::Aborted)), "got {result:?}");

    assert_eq!(by_arn(store, &a.arn), Some(a.clone()));
    assert_eq!(by_name(store, &scope(), "b"), Some(b.clone()));
    assert_eq!(by_arn(store, &c.arn), Some(c.clone()));
    assert_eq!(versions(store, &a.arn), va);
    assert_eq!(value(store, &a.arn, "v1"), Some(b"a0".to_vec()));
    assert_eq!(value(store, &a.arn, "v2"), Some(b"a1".to_vec()));
    assert_eq!(value(store, &a.arn, "v3"), None);
    assert_eq!(versions(store, &b.arn), [version("v1", &["AWSCURRENT"], T0)]);
    assert_eq!(value(store, &b.arn, "v1"), Some(b"b0".to_vec()));
    assert_eq!(read(store, |txn| txn.wrapped_key("key")), Some(b"original key".to_vec()));
    assert_eq!(read(store, |txn| txn.setting("setting")), Some(b"original setting".to_vec()));
    assert_eq!(read(store, |txn| txn.secrets_due_for_deletion(T0 + DAY)), Vec::<String>::new());
    for sort_by in SORTS {
        let listed = page(store, &scope(), &query(sort_by, false, None), usize::MAX);
        assert_eq!(listed, [a.clone(), b.clone(), c.clone()], "{sort_by:?}");
    }
}

pub fn failed_write_returns_the_closures_error(store: &dyn Store) {
    let result = write(store, |txn| {
        txn.insert_secret(&secret(&scope(), "x", T0))?;
        Err::<(), _>(StoreError::Backend("the caller's reason".to_owned()))
    });
    match result {
        Err(StoreError::Backend(message)) => assert_eq!(message, "the caller's reason"),
        other => panic!("expected the closure's own error, got {other:?}"),
    }
    assert_eq!(by_name(store, &scope(), "x"), None);
}

pub fn write_that_recovers_from_a_conflict_commits_the_rest(store: &dyn Store) {
    let taken = insert(store, &secret(&scope(), "taken", T0));
    insert_version(store, &taken.arn, &version("v1", &["AWSCURRENT"], T0), b"one");
    write(store, |txn| {
        let clash = SecretMeta { arn: arn(&scope(), "taken-2"), ..secret(&scope(), "taken", T0) };
        assert_conflict(txn.insert_secret(&clash), "name clash inside a write");
        let dup = version("v1", &["AWSPENDING"], T0);
        assert_conflict(txn.insert_version(&taken.arn, &dup, &sealed(b"dup")), "version clash");
        txn.insert_secret(&secret(&scope(), "fresh", T0))?;
        txn.insert_version(&taken.arn, &version("v2", &["AWSPENDING"], T0), &sealed(b"two"))
    })
    .unwrap();
    assert!(by_name(store, &scope(), "fresh").is_some());
    assert_eq!(by_arn(store, &arn(&scope(), "taken-2")), None);
    assert_eq!(
        versions(store, &taken.arn),
        [version("v1", &["AWSCURRENT"], T0), version("v2", &["AWSPENDING"], T0)]
    );
    assert_eq!(value(store, &taken.arn, "v1"), Some(b"one".to_vec()));
}

pub fn a_write_sees_its_own_changes(store: &dyn Store) {
    let old = insert(store, &secret(&scope(), "old", T0));
    write(store, |txn| {
        let new = secret(&scope(), "new", T0 - 1);
        let seq = txn.insert_secret(&new)?;
        assert_eq!(txn.secret_by_name(&scope(), "new")?, Some(SecretMeta { seq, ..new.clone() }));
        txn.insert_version(&new.arn, &version("v1", &["AWSCURRENT"], T0), &sealed(b"n"))?;
        assert_eq!(txn.versions(&new.arn)?, [version("v1", &["AWSCURRENT"], T0)]);
        assert_eq!(txn.version_value(&new.arn, "v1")?, Some(sealed(b"n")));
        txn.delete_secret(&old.arn)?;
        assert_eq!(txn.secret_by_arn(&old.arn)?, None);
        let mut listed = Vec::new();
        txn.visit_secrets(&scope(), &query(SortBy::CreatedDate, false, None), &mut |m| {
            listed.push(m.name.clone());
            true
        })?;
        assert_eq!(listed, ["new"]);
        txn.put_setting("s", b"v")?;
        assert_eq!(txn.setting("s")?, Some(b"v".to_vec()));
        txn.put_wrapped_key("k", b"w")?;
        assert_eq!(txn.wrapped_key("k")?, Some(b"w".to_vec()));
        Ok(())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// Listing.

pub fn visit_orders_by_every_sort_key_in_both_directions(store: &dyn Store) {
    let metas = listing_fixture(store, &scope());
    for sort_by in SORTS {
        for descending in [false, true] {
            let listed = page(store, &scope(), &query(sort_by, descending, None), usize::MAX);
            assert_eq!(
                names(&listed),
                expected_order(&metas, sort_by, descending),
                "{sort_by:?}, descending: {descending}"
            );
        }
    }
    // Spot checks that do not rely on the expected-order helper.
    let by_name = page(store, &scope(), &query(SortBy::Name, false, None), usize::MAX);
    assert_eq!(
        names(&by_name)[..5],
        ["9lives", "Alpha", "Zeta", "_underscore", "a"],
        "names sort by their bytes"
    );
    let by_created = page(store, &scope(), &query(SortBy::CreatedDate, false, None), usize::MAX);
    assert_eq!(names(&by_created)[..3], ["alpha", "alpha-2", "Alpha"], "ties go by insertion");
    let by_accessed =
        page(store, &scope(), &query(SortBy::LastAccessedDate, true, None), usize::MAX);
    assert_eq!(
        names(&by_accessed)[8..],
        ["prod", "_underscore", "alpha-2", "alpha"],
        "never-accessed secrets sort first, so last when descending"
    );
}

pub fn visit_resumes_strictly_after_the_cursor(store: &dyn Store) {
    let metas = listing_fixture(store, &scope());
    for sort_by in SORTS {
        for descending in [false, true] {
            let expected = expected_order(&metas, sort_by, descending);
            for page_size in [1, 2, 5, 11, 12, 13] {
                let walked = all_pages(store, &scope(), sort_by, descending, page_size);
                assert_eq!(
                    names(&walked),
                    expected,
                    "{sort_by:?}, descending: {descending}, pages of {page_size}"
                );
            }
            // Resuming after each secret yields exactly the ones that follow it.
            let full = page(store, &scope(), &query(sort_by, descending, None), usize::MAX);
            for (i, meta) in full.iter().enumerate() {
                let after = Some(cursor_of(meta, sort_by));
                let rest = page(store, &scope(), &query(sort_by, descending, after), usize::MAX);
                assert_eq!(rest, full[i + 1..], "{sort_by:?} {descending} after {}", meta.name);
            }
        }
    }
}

pub fn visit_pages_stay_correct_when_secrets_change_between_pages(store: &dyn Store) {
    let originals = listing_fixture(store, &scope());
    for sort_by in SORTS {
        for descending in [false, true] {
            // A scope per order, so each starts from the same twelve secrets.
            let scope = Scope::new(format!("{sort_by:?}-{descending}"), "test-region-1");
            let mut metas: Vec<SecretMeta> = originals
                .iter()
                .map(|m| {
                    let arn = arn(&scope, &m.name);
                    insert(store, &SecretMeta { scope: scope.clone(), arn, ..m.clone() })
                })
                .collect();
            let expected = expected_order(&metas, sort_by, descending);
            // Five, so the first page ends past the four never-accessed secrets.
            let first = page(store, &scope, &query(sort_by, descending, None), 5);
            assert_eq!(names(&first), expected[..5]);
            let last_seen = first.last().unwrap().clone();

            // Between pages: a secret that sorts before the cursor (which the
            // walk has passed), one that sorts at the very end, and the removal
            // of one not yet returned.
            let (low, high) = (T0 - 1_000 * DAY, T0 + 1_000 * DAY);
            let (passed_at, ahead_at) = if descending { (high, low) } else { (low, high) };
            let (passed_name, ahead_name) =
                if descending { ("~passed", "!ahead") } else { ("!passed", "~ahead") };
            for (name, at) in [(passed_name, passed_at), (ahead_name, ahead_at)] {
                let meta = SecretMeta {
                    last_changed_ms: at,
                    last_accessed_ms: Some(at),
                    ..secret(&scope, name, at)
                };
                metas.push(insert(store, &meta));
            }
            let removed = expected[6].clone();
            write(store, |txn| txn.delete_secret(&arn(&scope, &removed))).unwrap();
            metas.retain(|m| m.name != removed);

            let mut rest: Vec<SecretMeta> = Vec::new();
            loop {
                let after = Some(cursor_of(rest.last().unwrap_or(&last_seen), sort_by));
                let next = page(store, &scope, &query(sort_by, descending, after), 3);
                if next.is_empty() {
                    break;
                }
                rest.extend(next);
                assert_no_endless_paging(&rest);
            }
            let now_expected = expected_order(&metas, sort_by, descending);
            let seen_at = now_expected.iter().position(|n| *n == last_seen.name).unwrap();
            let context = format!("{sort_by:?}, descending: {descending}");
            assert_eq!(names(&rest), now_expected[seen_at + 1..], "{context}");
            assert!(!names(&rest).contains(&passed_name.to_owned()), "{context}");
            assert!(names(&rest).contains(&ahead_name.to_owned()), "{context}");
        }
    }
}

pub fn visit_walks_long_listings_completely(store: &dyn Store) {
    // Enough secrets that a backend reading in chunks needs several of them,
    // with long runs of equal dates so chunk borders fall inside ties.
    let mut metas = Vec::new();
    write(store, |txn| {
        metas.clear();
        for i in 0..2_500i64 {
            let mut meta = secret(&scope(), &format!("secret-{:05}", (i * 7_919) % 2_500), T0);
            meta.created_ms = T0 + i / 300;
            meta.last_changed_ms = T0 + (i % 4);
            meta.last_accessed_ms = if i % 3 == 0 { None } else { Some(T0 + (i % 5) * DAY) };
            let seq = txn.insert_secret(&meta)?;
            metas.push(SecretMeta { seq, ..meta });
        }
        Ok(())
    })
    .unwrap();
    for sort_by in SORTS {
        for descending in [false, true] {
            let expected = expected_order(&metas, sort_by, descending);
            let listed = page(store, &scope(), &query(sort_by, descending, None), usize::MAX);
            assert_eq!(names(&listed), expected, "{sort_by:?}, descending: {descending}");
            let resumed_at = 1_234;
            let after = Some(cursor_of(&listed[resumed_at], sort_by));
            let rest = page(store, &scope(), &query(sort_by, descending, after), usize::MAX);
            assert_eq!(names(&rest), expected[resumed_at + 1..]);
            // The expected count is a hint only: the walk goes on past it.
            for hint in [1, 101] {
                let hinted = ListQuery { expected: Some(hint), ..query(sort_by, descending, None) };
                assert_eq!(names(&page(store, &scope(), &hinted, usize::MAX)), expected);
            }
        }
    }
}

pub fn visit_stops_when_the_visitor_says_so(store: &dyn Store) {
    listing_fixture(store, &scope());
    for limit in [1, 3, 12] {
        let mut calls = 0;
        store
            .read(&mut |txn| {
                calls = 0;
                txn.visit_secrets(&scope(), &query(SortBy::Name, false, None), &mut |_| {
                    calls += 1;
                    calls < limit
                })
            })
            .unwrap();
        assert_eq!(calls, limit);
    }
}

pub fn visit_sees_only_its_scope(store: &dyn Store) {
    let here = scope();
    let other_account = Scope::new("222222222222", "us-east-1");
    let other_region = Scope::new("111111111111", "us-west-2");
    insert(store, &secret(&here, "mine", T0));
    insert(store, &secret(&other_account, "theirs", T0));
    insert(store, &secret(&other_region, "elsewhere", T0));
    insert(store, &secret(&other_account, "mine", T0));
    for sort_by in SORTS {
        for descending in [false, true] {
            let q = query(sort_by, descending, None);
            assert_eq!(names(&page(store, &here, &q, usize::MAX)), ["mine"]);
            assert_eq!(names(&page(store, &other_region, &q, usize::MAX)), ["elsewhere"]);
        }
    }
    let empty = Scope::new("333333333333", "us-east-1");
    assert!(page(store, &empty, &query(SortBy::Name, false, None), usize::MAX).is_empty());
}

pub fn visit_follows_updated_sort_keys(store: &dyn Store) {
    let a = insert(store, &secret(&scope(), "a", T0));
    let b = insert(store, &secret(&scope(), "b", T0 + 1));
    let c = insert(store, &secret(&scope(), "c", T0 + 2));
    let accessed = |store: &dyn Store| {
        names(&page(store, &scope(), &query(SortBy::LastAccessedDate, false, None), 9))
    };
    let changed = |store: &dyn Store| {
        names(&page(store, &scope(), &query(SortBy::LastChangedDate, false, None), 9))
    };
    assert_eq!(accessed(store), ["a", "b", "c"]);
    assert_eq!(changed(store), ["a", "b", "c"]);
    write(store, |txn| {
        txn.update_secret(&SecretMeta { last_accessed_ms: Some(T0 + DAY), ..a.clone() })?;
        txn.update_secret(&SecretMeta { last_changed_ms: T0 + 10, ..a.clone() })?;
        txn.update_secret(&SecretMeta { last_changed_ms: T0 - 10, ..c.clone() })
    })
    .unwrap();
    // The second update of `a` replaced the first, so its access date is gone again.
    assert_eq!(accessed(store), ["a", "b", "c"]);
    assert_eq!(changed(store), ["c", "b", "a"]);
    write(store, |txn| {
        txn.update_secret(&SecretMeta { last_accessed_ms: Some(T0), ..b.clone() })?;
        txn.update_secret(&SecretMeta {
            last_accessed_ms: Some(T0 - DAY),
            last_changed_ms: T0 - 10,
            ..c.clone()
        })
    })
    .unwrap();
    assert_eq!(accessed(store), ["a", "c", "b"]);
}

pub fn visit_includes_secrets_scheduled_for_deletion(store: &dyn Store) {
    let doomed = insert(
        store,
        &SecretMeta { deletion_ms: Some(T0 + DAY), ..secret(&scope(), "doomed", T0) },
    );
    insert(store, &secret(&scope(), "alive", T0 + 1));
    let listed = page(store, &scope(), &query(SortBy::CreatedDate, false, None), usize::MAX);
    assert_eq!(names(&listed), ["doomed", "alive"]);
    assert_eq!(listed[0], doomed);
}

pub fn secrets_due_for_deletion_are_those_scheduled_up_to_now(store: &dyn Store) {
    let now = T0 + 10 * DAY;
    let other = Scope::new("222222222222", "eu-central-1");
    let make = |scope: &Scope, name: &str, deletion_ms: Option<Millis>| SecretMeta {
        deletion_ms,
        ..secret(scope, name, T0)
    };
    let overdue = insert(store, &make(&scope(), "overdue", Some(now - DAY)));
    let exactly = insert(store, &make(&other, "exactly-now", Some(now)));
    insert(store, &make(&scope(), "tomorrow", Some(now + 1)));
    insert(store, &make(&scope(), "not-scheduled", None));
    let cancelled = insert(store, &make(&other, "cancelled", Some(now - 5)));
    write(store, |txn| txn.update_secret(&SecretMeta { deletion_ms: None, ..cancelled.clone() }))
        .unwrap();
    let rescheduled = insert(store, &make(&other, "rescheduled", None));
    write(store, |txn| {
        txn.update_secret(&SecretMeta { deletion_ms: Some(now - 2 * DAY), ..rescheduled.clone() })
    })
    .unwrap();

    let mut due = read(store, |txn| txn.secrets_due_for_deletion(now));
    due.sort();
    let mut expected = vec![overdue.arn.clone(), exactly.arn.clone(), rescheduled.arn.clone()];
    expected.sort();
    assert_eq!(due, expected);
    assert_eq!(
        read(store, |txn| txn.secrets_due_for_deletion(now - 3 * DAY)),
        Vec::<String>::new()
    );
    write(store, |txn| txn.delete_secret(&overdue.arn)).unwrap();
    assert_eq!(read(store, |txn| txn.secrets_due_for_deletion(now)).len(), 2);
}

// ---------------------------------------------------------------------------
// Keys and settings.

pub fn wrapped_keys_round_trip_and_overwrite(store: &dyn Store) {
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    write(store, |txn| {
        txn.put_wrapped_key("account/111111111111", &binary)?;
        txn.put_wrapped_key("account/222222222222", b"second")
    })
    .unwrap();
    assert_eq!(read(store, |txn| txn.wrapped_key("account/111111111111")), Some(binary));
    write(store, |txn| txn.put_wrapped_key("account/111111111111", b"rewrapped")).unwrap();
    assert_eq!(
        read(store, |txn| txn.wrapped_key("account/111111111111")),
        Some(b"rewrapped".to_vec())
    );
    assert_eq!(
        read(store, |txn| txn.wrapped_key("account/222222222222")),
        Some(b"second".to_vec())
    );
    assert_eq!(read(store, |txn| txn.setting("account/222222222222")), None, "separate namespaces");
}

pub fn settings_round_trip_and_overwrite(store: &dyn Store) {
    write(store, |txn| {
        txn.put_setting("master-key-check", &[0, 1, 2, 0])?;
        txn.put_setting("empty", b"")
    })
    .unwrap();
    assert_eq!(read(store, |txn| txn.setting("master-key-check")), Some(vec![0, 1, 2, 0]));
    assert_eq!(read(store, |txn| txn.setting("empty")), Some(Vec::new()));
    write(store, |txn| txn.put_setting("master-key-check", b"new")).unwrap();
    assert_eq!(read(store, |txn| txn.setting("master-key-check")), Some(b"new".to_vec()));
    assert_eq!(read(store, |txn| txn.wrapped_key("master-key-check")), None);
}

pub fn records_round_trip_overwrite_and_delete(store: &dyn Store) {
    let binary: Vec<u8> = (0..=255u8).collect();
    write(store, |txn| {
        txn.put_record("kms-key", "a/1", &binary)?;
        txn.put_record("kms-alias", "a/1", b"alias")
    })
    .unwrap();
    assert_eq!(read(store, |txn| txn.record("kms-key", "a/1")), Some(binary));
    assert_eq!(read(store, |txn| txn.record("kms-alias", "a/1")), Some(b"alias".to_vec()));
    assert_eq!(read(store, |txn| txn.record("kms-key", "a/2")), None);
    write(store, |txn| txn.put_record("kms-key", "a/1", b"new")).unwrap();
    assert_eq!(read(store, |txn| txn.record("kms-key", "a/1")), Some(b"new".to_vec()));
    write(store, |txn| {
        txn.delete_record("kms-key", "a/1")?;
        txn.delete_record("kms-key", "never-there")
    })
    .unwrap();
    assert_eq!(read(store, |txn| txn.record("kms-key", "a/1")), None);
    assert_eq!(read(store, |txn| txn.record("kms-alias", "a/1")), Some(b"alias".to_vec()));
}

pub fn records_list_by_prefix_in_key_order_with_paging(store: &dyn Store) {
    write(store, |txn| {
        for key in
            ["acct1/us-east-1/c", "acct1/us-east-1/a", "acct1/us-east-1/b", "acct1/eu/a", "acct2/x"]
        {
            txn.put_record("kms-key", key, key.as_bytes())?;
        }
        txn.put_record("other-kind", "acct1/us-east-1/z", b"z")
    })
    .unwrap();
    let keys = |prefix: &str, after: Option<&str>, limit: usize| -> Vec<String> {
        read(store, |txn| txn.records("kms-key", prefix, after, limit))
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k.as_bytes(), v.as_slice());
                k
            })
            .collect()
    };
    assert_eq!(
        keys("acct1/us-east-1/", None, 10),
        ["acct1/us-east-1/a", "acct1/us-east-1/b", "acct1/us-east-1/c"]
    );
    assert_eq!(keys("acct1/us-east-1/", None, 2), ["acct1/us-east-1/a", "acct1/us-east-1/b"]);
    assert_eq!(keys("acct1/us-east-1/", Some("acct1/us-east-1/b"), 10), ["acct1/us-east-1/c"]);
    assert_eq!(keys("acct1/", None, 10).len(), 4);
    assert_eq!(keys("", None, 10).len(), 5);
    assert!(keys("acct3/", None, 10).is_empty());
    // A cursor before the prefix, inside it, at its end and past it.
    assert_eq!(keys("acct1/us-east-1/", Some("acct0"), 10).len(), 3);
    assert_eq!(keys("acct1/", Some("acct1/eu/a"), 2), ["acct1/us-east-1/a", "acct1/us-east-1/b"]);
    assert!(keys("acct1/us-east-1/", Some("acct1/us-east-1/c"), 10).is_empty());
    assert!(keys("acct1/us-east-1/", Some("acct2"), 10).is_empty());
}

pub fn failed_write_undoes_record_changes(store: &dyn Store) {
    write(store, |txn| txn.put_record("k", "kept", b"before")).unwrap();
    let result = store.write(&mut |txn| {
        txn.put_record("k", "kept", b"changed")?;
        txn.put_record("k", "added", b"added")?;
        txn.delete_record("k", "kept")?;
        Err(StoreError::Aborted)
    });
    assert!(matches!(result, Err(StoreError::Aborted)));
    assert_eq!(read(store, |txn| txn.record("k", "kept")), Some(b"before".to_vec()));
    assert_eq!(read(store, |txn| txn.record("k", "added")), None);
}

// ---------------------------------------------------------------------------
// Concurrency.

pub fn concurrent_writers_never_lose_an_insert(store: &dyn Store) {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let s = insert(store, &secret(&scope(), "contended", T0));
    std::thread::scope(|threads| {
        for t in 0..THREADS {
            let arn = s.arn.clone();
            threads.spawn(move || {
                for i in 0..EACH {
                    let id = format!("t{t}-v{i}");
                    let meta = version(&id, &[], T0);
                    write(store, |txn| {
                        // Read-modify-write inside the transaction: a lost
                        // update would show up as a missing or repeated count.
                        let count = txn
                            .setting("count")?
                            .map_or(0, |b| b[0] as usize * 256 + b[1] as usize);
                        let next = count + 1;
                        txn.put_setting("count", &[(next / 256) as u8, (next % 256) as u8])?;
                        txn.insert_version(&arn, &meta, &sealed(id.as_bytes()))
                    })
                    .expect("concurrent write failed");
                }
            });
        }
        // Reads keep working while the writers run.
        for _ in 0..20 {
            let seen = versions(store, &s.arn).len();
            assert!(seen <= THREADS * EACH);
        }
    });
    let all = versions(store, &s.arn);
    assert_eq!(all.len(), THREADS * EACH);
    let ids: BTreeSet<&str> = all.iter().map(|v| v.version_id.as_str()).collect();
    assert_eq!(ids.len(), THREADS * EACH);
    for t in 0..THREADS {
        // Each thread's versions are in the order that thread inserted them.
        let mine: Vec<&str> = all
            .iter()
            .map(|v| v.version_id.as_str())
            .filter(|id| id.starts_with(&format!("t{t}-")))
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("t{t}-v{i}")).collect();
        assert_eq!(mine, expected);
    }
    let count = read(store, |txn| txn.setting("count")).unwrap();
    assert_eq!(count[0] as usize * 256 + count[1] as usize, THREADS * EACH);
    assert_eq!(value(store, &s.arn, "t3-v7"), Some(b"t3-v7".to_vec()));
}

// ---------------------------------------------------------------------------
// Export and import (backup and restore).

/// Everything a store can hold: secrets in two scopes with every metadata
/// field, versions with binary and empty values, a deleted secret (a gap in
/// `seq`), keys, settings and records. Returns the surviving secrets as stored.
fn snapshot_fixture(store: &dyn Store) -> Vec<SecretMeta> {
    let other = Scope::new("222222222222", "eu-west-1");
    let full = SecretMeta {
        description: Some("described \u{e9}".to_owned()),
        kms_key_id: Some("alias/custom".to_owned()),
        tags: Some(vec![Tag { key: "env".to_owned(), value: "prod".to_owned() }]),
        last_accessed_ms: Some(T0 + DAY),
        deletion_ms: Some(T0 + 7 * DAY),
        resource_policy: Some("{}".to_owned()),
        rotation: None,
        replication: Default::default(),
        ..secret(&scope(), "full", T0 + 5)
    };
    let first = insert(store, &full);
    let gone = insert(store, &secret(&scope(), "gone", T0));
    let second = insert(store, &secret(&scope(), "tie", T0 + 5));
    let third = insert(store, &secret(&other, "elsewhere", T0 - 1));
    write(store, |txn| txn.delete_secret(&gone.arn)).unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    insert_version(store, &first.arn, &version("zz-old", &[], T0), &binary);
    insert_version(store, &first.arn, &version("aa-prev", &["AWSPREVIOUS"], T0 + 1), b"");
    insert_version(
        store,
        &first.arn,
        &VersionMeta {
            last_accessed_ms: Some(T0 + DAY),
            kms_key_id: Some("alias/custom".to_owned()),
            ..version("mm-cur", &["AWSCURRENT", "label"], T0 + 2)
        },
        b"current",
    );
    insert_version(store, &third.arn, &version("v1", &["AWSCURRENT"], T0), b"third");
    write(store, |txn| {
        txn.put_wrapped_key("scope-kek/111111111111/us-east-1", &binary)?;
        txn.put_wrapped_key("scope-kek/222222222222/eu-west-1", b"wrapped")?;
        txn.put_setting("master-key-check", b"check")?;
        txn.put_setting("empty", b"")?;
        txn.put_record("kms-key", "a/1", b"key record")?;
        txn.put_record("audit", "0001", b"event")?;
        txn.put_record("audit", "", b"empty key")
    })
    .unwrap();
    vec![first, second, third]
}

fn export_all(store: &dyn Store) -> Vec<SnapshotItem> {
    let mut items = Vec::new();
    store
        .export(&mut |item| {
            items.push(item);
            Ok(())
        })
        .expect("export failed");
    items
}

/// A snapshot with the store-assigned `seq` numbers blanked, for comparing
/// stores that numbered the same secrets differently.
fn without_seq(items: &[SnapshotItem]) -> Vec<SnapshotItem> {
    items
        .iter()
        .map(|item| match item {
            SnapshotItem::Secret(meta) => {
                SnapshotItem::Secret(SecretMeta { seq: 0, ..meta.clone() })
            }
            other => other.clone(),
        })
        .collect()
}

/// The non-secret items as a set: their order between kinds is not part of the contract.
fn keys_settings_records(items: &[SnapshotItem]) -> BTreeSet<String> {
    items
        .iter()
        .filter(|item| !matches!(item, SnapshotItem::Secret(_) | SnapshotItem::Version { .. }))
        .map(|item| format!("{item:?}"))
        .collect()
}

pub fn export_lists_everything_with_secrets_before_their_versions(store: &dyn Store) {
    let secrets = snapshot_fixture(store);
    let items = export_all(store);
    let exported: Vec<&SecretMeta> = items
        .iter()
        .filter_map(|item| match item {
            SnapshotItem::Secret(meta) => Some(meta),
            _ => None,
        })
        .collect();
    assert_eq!(exported, secrets.iter().collect::<Vec<_>>(), "secrets, in seq order");
    let mut seen_secrets = BTreeSet::new();
    let mut versions_of: std::collections::BTreeMap<String, Vec<(VersionMeta, Vec<u8>)>> =
        Default::default();
    for item in &items {
        match item {
            SnapshotItem::Secret(meta) => {
                seen_secrets.insert(meta.arn.clone());
            }
            SnapshotItem::Version { arn, meta, value } => {
                assert!(seen_secrets.contains(arn), "a version of {arn} came before its secret");
                versions_of.entry(arn.clone()).or_default().push((meta.clone(), value.0.clone()));
            }
            _ => {}
        }
    }
    for meta in &secrets {
        let expected: Vec<(VersionMeta, Vec<u8>)> = versions(store, &meta.arn)
            .into_iter()
            .map(|v| {
                let bytes = value(store, &meta.arn, &v.version_id).unwrap();
                (v, bytes)
            })
            .collect();
        assert_eq!(versions_of.remove(&meta.arn).unwrap_or_default(), expected, "{}", meta.name);
    }
    assert!(versions_of.is_empty(), "versions of unknown secrets: {versions_of:?}");
    let binary: Vec<u8> = (0..=255u8).collect();
    let expected: BTreeSet<String> = [
        SnapshotItem::WrappedKey {
            key_id: "scope-kek/111111111111/us-east-1".to_owned(),
            wrapped: binary,
        },
        SnapshotItem::WrappedKey {
            key_id: "scope-kek/222222222222/eu-west-1".to_owned(),
            wrapped: b"wrapped".to_vec(),
        },
        SnapshotItem::Setting { name: "master-key-check".to_owned(), value: b"check".to_vec() },
        SnapshotItem::Setting { name: "empty".to_owned(), value: Vec::new() },
        SnapshotItem::Record {
            kind: "kms-key".to_owned(),
            key: "a/1".to_owned(),
            value: b"key record".to_vec(),
        },
        SnapshotItem::Record {
            kind: "audit".to_owned(),
            key: "0001".to_owned(),
            value: b"event".to_vec(),
        },
        SnapshotItem::Record {
            kind: "audit".to_owned(),
            key: String::new(),
            value: b"empty key".to_vec(),
        },
    ]
    .iter()
    .map(|item| format!("{item:?}"))
    .collect();
    assert_eq!(keys_settings_records(&items), expected);
}

pub fn export_then_import_elsewhere_reproduces_the_store(store: &dyn Store) {
    snapshot_fixture(store);
    let items = export_all(store);
    let copy = MemoryStore::new();
    copy.import(&items).expect("import into an empty memory store");
    let again = export_all(&copy);
    assert_eq!(without_seq(&again), without_seq(&items));
}

pub fn import_into_this_store_reproduces_the_snapshot(store: &dyn Store) {
    let source = MemoryStore::new();
    let secrets = snapshot_fixture(&source);
    let items = export_all(&source);
    store.import(&items).expect("import into an empty store");
    let imported = export_all(store);
    assert_eq!(without_seq(&imported)[..secrets.len()], without_seq(&items)[..secrets.len()]);
    let versions_only = |items: &[SnapshotItem]| -> Vec<SnapshotItem> {
        items.iter().filter(|item| matches!(item, SnapshotItem::Version { .. })).cloned().collect()
    };
    assert_eq!(versions_only(&imported), versions_only(&items));
    assert_eq!(keys_settings_records(&imported), keys_settings_records(&items));
    // Secrets are numbered anew, in the snapshot's order, so listings with
    // ties come out as they did in the source.
    let seqs: Vec<i64> = secrets.iter().map(|m| by_arn(store, &m.arn).unwrap().seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let listed = page(store, &scope(), &query(SortBy::CreatedDate, false, None), usize::MAX);
    assert_eq!(names(&listed), ["full", "tie"]);
    assert_eq!(
        read(store, |txn| txn.records("audit", "", None, 10)),
        [(String::new(), b"empty key".to_vec()), ("0001".to_owned(), b"event".to_vec())]
    );
    // The store goes on working normally after an import.
    let after = insert(store, &secret(&scope(), "after", T0 + 5));
    assert!(after.seq > *seqs.iter().max().unwrap());
}

pub fn import_refuses_a_store_that_is_not_empty(store: &dyn Store) {
    let snapshot = vec![
        SnapshotItem::Secret(secret(&scope(), "restored", T0)),
        SnapshotItem::Setting { name: "restored".to_owned(), value: b"1".to_vec() },
    ];
    write(store, |txn| txn.put_record("k", "only", b"record")).unwrap();
    assert_conflict(store.import(&snapshot), "a store holding a record");
    write(store, |txn| txn.delete_record("k", "only")).unwrap();
    let occupant = insert(store, &secret(&scope(), "occupant", T0));
    assert_conflict(store.import(&snapshot), "a store holding a secret");
    assert_eq!(by_name(store, &scope(), "restored"), None);
    write(store, |txn| txn.delete_secret(&occupant.arn)).unwrap();

    store.import(&snapshot).expect("the store is empty again");
    assert_conflict(store.import(&snapshot), "a store holding the first import");
    assert!(by_name(store, &scope(), "restored").is_some());
}

pub fn import_refuses_a_store_holding_only_a_setting(store: &dyn Store) {
    write(store, |txn| txn.put_setting("master-key-check", b"check")).unwrap();
    let snapshot = vec![SnapshotItem::Secret(secret(&scope(), "restored", T0))];
    assert_conflict(store.import(&snapshot), "a store holding a setting");
    assert_eq!(by_name(store, &scope(), "restored"), None);
}

pub fn failed_import_changes_nothing(store: &dyn Store) {
    let s = secret(&scope(), "restored", T0);
    let broken = vec![
        SnapshotItem::Secret(s.clone()),
        SnapshotItem::WrappedKey { key_id: "k".to_owned(), wrapped: b"w".to_vec() },
        SnapshotItem::Version {
            arn: s.arn.clone(),
            meta: version("v1", &["AWSCURRENT"], T0),
            value: sealed(b"one"),
        },
        // A version of a secret the snapshot does not hold: the import fails here.
        SnapshotItem::Version {
            arn: arn(&scope(), "missing"),
            meta: version("v1", &["AWSCURRENT"], T0),
            value: sealed(b"orphan"),
        },
    ];
    assert!(store.import(&broken).is_err());
    assert!(export_all(store).is_empty(), "a failed import left something behind");
    store.import(&broken[..3]).expect("the store is still empty and usable");
    assert_eq!(value(store, &s.arn, "v1"), Some(b"one".to_vec()));
}

/// What a restore relies on to check a backup's MAC while streaming it: the producer
/// can refuse after it has handed over every item, and then nothing is kept.
pub fn a_streamed_import_refused_after_its_last_item_changes_nothing(store: &dyn Store) {
    let s = secret(&scope(), "streamed", T0);
    let items = [
        SnapshotItem::Secret(s.clone()),
        SnapshotItem::Version {
            arn: s.arn.clone(),
            meta: version("v1", &["AWSCURRENT"], T0),
            value: sealed(b"one"),
        },
        SnapshotItem::Setting { name: "streamed".to_owned(), value: b"1".to_vec() },
    ];
    let refused = store.import_from(&mut |sink| {
        for item in &items {
            sink(item)?;
        }
        Err(StoreError::Aborted)
    });
    assert!(refused.is_err());
    assert!(export_all(store).is_empty(), "a refused import left something behind");
    let mut handed = 0;
    store
        .import_from(&mut |sink| {
            for item in &items {
                handed += 1;
                sink(item)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(handed >= items.len());
    assert_eq!(value(store, &s.arn, "v1"), Some(b"one".to_vec()));
}
