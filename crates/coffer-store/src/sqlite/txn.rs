//! The SQLite transaction and its reads (`ReadTxn`), listings included.

use std::cell::RefCell;

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use super::unreadable;
use crate::read_cache::{self, Entry, KnownVersions, ReadCache, Touched, version_id_hash};
use crate::{
    CursorKey, ListQuery, ReadTxn, SealedValue, SortBy, StoreError, StoreResult, cursor_of,
};

/// Listing reads this many rows in its first query and doubles up to the
/// maximum, so a short first page stays cheap and a long walk takes few queries.
pub(super) const FIRST_CHUNK: i64 = 64;
pub(super) const MAX_CHUNK: i64 = 1024;

/// The `accessed_sort_ms` column of a secret: its position under
/// [`SortBy::LastAccessedDate`], as [`crate::cursor_of`] defines it.
pub(super) fn accessed_sort_ms(meta: &SecretMeta) -> Millis {
    meta.last_accessed_ms.unwrap_or(i64::MIN)
}

/// A read or write transaction on one connection.
pub(super) struct SqlTxn<'c> {
    pub(super) conn: &'c Connection,
    /// In a write transaction of a store with a read cache: where the cached keys
    /// this transaction changes are noted, and the cache (which says which record
    /// kinds it holds).
    pub(super) track: Option<(&'c mut Touched, &'c ReadCache)>,
    /// The newest version's `ord` of one secret, as this transaction last read or wrote
    /// it: the next version's `ord` follows from it, instead of from a `MAX(ord)` over
    /// every version of the secret in the `INSERT` (see [`Self::newest_ord_of`]).
    pub(super) newest_ord: RefCell<Option<(String, i64)>>,
    /// In the writer: what this transaction knows of the versions of the secrets it read
    /// or changed (`None`: changed in ways not followed), handed to the batch if it
    /// succeeds ([`Self::succeeded`]). See [`ReadCache::known_versions`].
    known_versions: RefCell<Vec<(String, Option<KnownVersions>)>>,
}

impl<'c> SqlTxn<'c> {
    pub(super) fn new(
        conn: &'c Connection,
        track: Option<(&'c mut Touched, &'c ReadCache)>,
    ) -> SqlTxn<'c> {
        SqlTxn { conn, track, newest_ord: RefCell::new(None), known_versions: RefCell::default() }
    }

    /// The batch member that ran in this transaction succeeded: what it knows of the
    /// versions it changed goes to the batch, to be kept once it commits.
    pub(super) fn succeeded(self) {
        if let Some((touched, _)) = self.track {
            for (arn, known) in self.known_versions.into_inner() {
                touched.versions_left(arn, known);
            }
        }
    }
}

/// What a transaction knows of the versions of `arn` (see [`SqlTxn::known_versions_of`]),
/// noted as not known when it had nothing for `arn` yet.
fn known_slot<'k>(
    known: &'k mut Vec<(String, Option<KnownVersions>)>,
    arn: &str,
) -> &'k mut Option<KnownVersions> {
    let at = match known.iter().position(|(a, _)| a == arn) {
        Some(at) => at,
        None => {
            known.push((arn.to_owned(), None));
            known.len() - 1
        }
    };
    &mut known[at].1
}

impl SqlTxn<'_> {
    /// The newest `ord` of `arn`'s versions, when this transaction knows it: it read
    /// every version of the secret, wrote the newest, or created the secret (0: none
    /// yet), and changed none since but
    /// through this transaction (which keeps it up to date). One transaction runs at a
    /// time on the writer's connection, so nothing else changes them meanwhile.
    pub(super) fn newest_ord_of(&self, arn: &str) -> Option<i64> {
        match &*self.newest_ord.borrow() {
            Some((known, ord)) if known == arn => Some(*ord),
            _ => None,
        }
    }

    /// Notes `ord` as the newest of `arn`'s versions (`None`: no longer known).
    pub(super) fn note_newest_ord(&self, arn: &str, ord: Option<i64>) {
        *self.newest_ord.borrow_mut() = ord.map(|ord| (arn.to_owned(), ord));
    }

    pub(super) fn touch_secret(&mut self, arn: &str, scope_and_name: Option<(&Scope, &str)>) {
        if let Some((touched, _)) = &mut self.track {
            touched.secret(arn, scope_and_name);
        }
    }

    /// What this transaction knows of the versions of `arn`, if it read or set it.
    fn known_versions_of(&self, arn: &str) -> Option<KnownVersions> {
        let known = self.known_versions.borrow();
        known.iter().find(|(a, _)| a == arn).and_then(|(_, known)| known.clone())
    }

    /// Notes what the versions of `arn` are now (`None`: not known), in the writer.
    pub(super) fn set_known_versions(&self, arn: &str, now: Option<KnownVersions>) {
        if self.track.is_none() {
            return;
        }
        *known_slot(&mut self.known_versions.borrow_mut(), arn) = now;
    }

    /// Follows a change this transaction made to the versions of `arn` in what it knows
    /// of them: `change` updates them, or returns false when it cannot say what they
    /// are now. A change to versions this transaction did not read leaves them unknown.
    pub(super) fn versions_changed(
        &self,
        arn: &str,
        change: impl FnOnce(&mut KnownVersions) -> bool,
    ) {
        if self.track.is_none() {
            return;
        }
        let mut known = self.known_versions.borrow_mut();
        let slot = known_slot(&mut known, arn);
        if let Some(versions) = slot
            && !change(versions)
        {
            *slot = None;
        }
    }

    pub(super) fn touch_versions(&mut self, arn: &str) {
        if let Some((touched, _)) = &mut self.track {
            touched.versions(arn);
        }
    }

    pub(super) fn touch_record(&mut self, kind: &str, key: &str) {
        if let Some((touched, cache)) = &mut self.track
            && cache.caches_kind(kind)
        {
            touched.record(kind, key);
        }
    }

    /// A lookup the writer's batch makes, answered from the read cache when the batch
    /// has not touched its key (see [`ReadCache::latest`]), else by `lookup`, whose
    /// answer for an untouched key is then cached when `fill` says how. Why: every
    /// write's closure runs on the one writer thread, so its lookups (the secret, the
    /// KMS key record) were serialized SQL and JSON parsing that readers had often
    /// cached already. Outside the writer (`track` is `None`) it is `lookup` alone.
    fn untouched_or<T>(
        &self,
        key: impl FnOnce() -> String,
        cached: impl FnOnce(Entry) -> Option<T>,
        fill: Option<fn(&T) -> Entry>,
        lookup: impl FnOnce() -> StoreResult<T>,
    ) -> StoreResult<T> {
        let Some((touched, cache)) = &self.track else { return lookup() };
        let key = key();
        if touched.covers(&key) {
            return lookup();
        }
        if let Some(found) = cache.latest(&key).and_then(cached) {
            return Ok(found);
        }
        let found = lookup()?;
        if let Some(entry) = fill {
            cache.put_latest(key, entry(&found));
        }
        Ok(found)
    }

    /// [`Self::untouched_or`] for a secret looked up by name or ARN.
    fn secret_untouched_or(
        &self,
        key: impl FnOnce() -> String,
        lookup: impl FnOnce() -> StoreResult<Option<SecretMeta>>,
    ) -> StoreResult<Option<SecretMeta>> {
        self.untouched_or(
            key,
            |entry| match entry {
                Entry::Secret(found) => Some(found.map(|meta| (*meta).clone())),
                _ => None,
            },
            // Not cached from here: a write looks a secret up to change it, and its
            // commit would drop the entry (a measured cost, BENCHMARKS.md "Fourteenth
            // session"); readers cache it.
            None,
            lookup,
        )
    }
}

pub(super) const SECRET_COLUMNS: &str = "seq, arn, account, region, name, meta";

/// A `secrets` row as read, before its JSON is parsed.
pub(super) struct SecretRow {
    pub(super) seq: i64,
    pub(super) arn: String,
    pub(super) account: String,
    pub(super) region: String,
    pub(super) name: String,
    pub(super) meta: String,
}

impl SecretRow {
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(SecretRow {
            seq: row.get(0)?,
            arn: row.get(1)?,
            account: row.get(2)?,
            region: row.get(3)?,
            name: row.get(4)?,
            meta: row.get(5)?,
        })
    }

    /// The metadata, with its identity taken from the columns, which are the
    /// authority: `seq` is assigned on insertion and the name and scope never change.
    pub(super) fn decode(self) -> StoreResult<SecretMeta> {
        let mut meta: SecretMeta =
            serde_json::from_str(&self.meta).map_err(|e| unreadable("secret metadata", &e))?;
        meta.seq = self.seq;
        meta.arn = self.arn;
        meta.scope = Scope { account: self.account, region: self.region };
        meta.name = self.name;
        Ok(meta)
    }
}

/// The SQL expression a listing sorts on.
pub(super) fn sort_key_sql(sort_by: SortBy) -> &'static str {
    match sort_by {
        SortBy::CreatedDate => "created_ms",
        SortBy::LastChangedDate => "last_changed_ms",
        SortBy::LastAccessedDate => "accessed_sort_ms",
        SortBy::Name => "name",
    }
}

/// The query for one chunk of a listing. Parameters: account, region, limit,
/// then, when resuming, the cursor's key and seq.
pub(super) fn listing_sql(sort_by: SortBy, descending: bool, resuming: bool) -> String {
    let key = sort_key_sql(sort_by);
    let (after, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let resume =
        if resuming { format!(" AND ({key}, seq) {after} (?4, ?5)") } else { String::new() };
    format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = ?1 AND region = ?2{resume} \
         ORDER BY {key} {direction}, seq {direction} LIMIT ?3"
    )
}

impl SqlTxn<'_> {
    /// One chunk of a listing, strictly after `after` when given.
    pub(super) fn listing_chunk(
        &self,
        scope: &Scope,
        query: &ListQuery,
        after: Option<&crate::Cursor>,
        limit: i64,
    ) -> StoreResult<Vec<SecretRow>> {
        let sql = listing_sql(query.sort_by, query.descending, after.is_some());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = match after {
            None => {
                stmt.query_map(params![scope.account, scope.region, limit], SecretRow::from_row)
            }
            Some(cursor) => {
                let key: &dyn ToSql = match (&cursor.key, query.sort_by) {
                    (CursorKey::Name(name), SortBy::Name) => name,
                    (CursorKey::Date(ms), SortBy::CreatedDate)
                    | (CursorKey::Date(ms), SortBy::LastChangedDate)
                    | (CursorKey::Date(ms), SortBy::LastAccessedDate) => ms,
                    _ => {
                        return Err(StoreError::Backend(
                            "the listing cursor does not match the sort order".to_owned(),
                        ));
                    }
                };
                stmt.query_map(
                    params![scope.account, scope.region, limit, key, cursor.seq],
                    SecretRow::from_row,
                )
            }
        }?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// The lookups themselves, in SQL (the writer's go through the read cache first).
impl SqlTxn<'_> {
    pub(super) fn secret_by_name_in_sql(
        &self,
        scope: &Scope,
        name: &str,
    ) -> StoreResult<Option<SecretMeta>> {
        let sql = format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = ?1 AND region = ?2 AND name = ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let row = stmt
            .query_row(params![scope.account, scope.region, name], SecretRow::from_row)
            .optional()?;
        row.map(SecretRow::decode).transpose()
    }

    pub(super) fn secret_by_arn_in_sql(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let row = stmt.query_row(params![arn], SecretRow::from_row).optional()?;
        row.map(SecretRow::decode).transpose()
    }

    pub(super) fn versions_in_sql(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        // The rows come in version id order (the table's key); the few of one secret
        // are put in creation order here rather than by a sort in SQLite.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version_id, meta, ord FROM version_meta WHERE arn = ?1")?;
        let mut rows = stmt
            .query_map(params![arn], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.sort_unstable_by_key(|(_, _, ord)| *ord);
        if let Some((_, _, newest)) = rows.last() {
            self.note_newest_ord(arn, Some(*newest));
        }
        rows.into_iter()
            .map(|(version_id, json, _)| {
                let mut meta: VersionMeta =
                    serde_json::from_str(&json).map_err(|e| unreadable("version metadata", &e))?;
                meta.version_id = version_id;
                Ok(meta)
            })
            .collect()
    }
}

impl SqlTxn<'_> {
    /// [`ReadTxn::labelled_versions`] in SQL: the metadata of deprecated versions (but
    /// `also`) is neither read nor parsed, only counted (the `labelled` column, schema 6).
    /// A version marked labelled is still checked once parsed, so a column out of step
    /// with the metadata could only cost a parse, never hide a labelled version.
    pub(super) fn labelled_versions_in_sql(
        &self,
        arn: &str,
        also: &str,
    ) -> StoreResult<(Vec<(i64, VersionMeta)>, usize)> {
        // One statement and one walk over the secret's versions, which returns a single
        // row: the count, the newest ord, and the versions kept as one JSON array of
        // `[ord, version id, metadata]` (SQLite hands each row back through the library
        // otherwise, and two walks cost as much again); in the writer, every version id
        // too (see `KnownVersions`).
        let every_id = self.track.is_some();
        let mut stmt = self.conn.prepare_cached(if every_id {
            "SELECT count(*), max(ord), json_group_array(json_array(ord, version_id, json(meta))) \
             FILTER (WHERE labelled OR version_id = ?2), json_group_array(version_id) \
             FROM version_meta WHERE arn = ?1"
        } else {
            "SELECT count(*), max(ord), json_group_array(json_array(ord, version_id, json(meta))) \
             FILTER (WHERE labelled OR version_id = ?2), NULL FROM version_meta WHERE arn = ?1"
        })?;
        let (count, newest, kept, ids) = stmt.query_row(params![arn, also], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })?;
        self.note_newest_ord(arn, newest);
        let kept: Vec<(i64, String, VersionMeta)> =
            serde_json::from_str(&kept).map_err(|e| unreadable("version metadata", &e))?;
        let mut kept: Vec<(i64, VersionMeta)> = kept
            .into_iter()
            .map(|(ord, version_id, meta)| (ord, VersionMeta { version_id, ..meta }))
            .filter(|(_, meta)| !meta.is_deprecated() || meta.version_id == also)
            .collect();
        kept.sort_unstable_by_key(|(ord, _)| *ord);
        let count = usize::try_from(count).unwrap_or(0);
        if let Some(ids) = ids {
            let ids: Vec<String> =
                serde_json::from_str(&ids).map_err(|e| unreadable("version ids", &e))?;
            let ids = ids.iter().map(|id| version_id_hash(id)).collect();
            let labelled = kept.iter().filter(|(_, meta)| !meta.is_deprecated()).cloned().collect();
            let newest = newest.unwrap_or(0);
            self.set_known_versions(arn, Some(KnownVersions { labelled, count, newest, ids }));
        }
        Ok((kept, count))
    }

    /// [`ReadTxn::labelled_versions`] from what the writer knows of the secret's versions:
    /// only `also`, when it is not among the labelled ones, is looked up (by its key).
    fn labelled_versions_known(
        &self,
        arn: &str,
        also: &str,
        known: KnownVersions,
    ) -> StoreResult<(Vec<(i64, VersionMeta)>, usize)> {
        self.note_newest_ord(arn, Some(known.newest));
        let mut kept = known.labelled.clone();
        if !kept.iter().any(|(_, meta)| meta.version_id == also)
            && known.ids.contains(&version_id_hash(also))
            && let Some((ord, meta)) = self.version_in_sql(arn, also)?
        {
            let at = kept.partition_point(|(before, _)| *before < ord);
            kept.insert(at, (ord, meta));
        }
        let count = known.count;
        self.set_known_versions(arn, Some(known));
        Ok((kept, count))
    }

    /// One version's metadata and `ord`, by its id.
    fn version_in_sql(
        &self,
        arn: &str,
        version_id: &str,
    ) -> StoreResult<Option<(i64, VersionMeta)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ord, meta FROM version_meta WHERE arn = ?1 AND version_id = ?2",
        )?;
        let row = stmt
            .query_row(params![arn, version_id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        row.map(|(ord, json)| {
            let meta: VersionMeta =
                serde_json::from_str(&json).map_err(|e| unreadable("version metadata", &e))?;
            Ok((ord, VersionMeta { version_id: version_id.to_owned(), ..meta }))
        })
        .transpose()
    }
}

impl ReadTxn for SqlTxn<'_> {
    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        let without_ords = |(kept, count): (Vec<(i64, VersionMeta)>, usize)| {
            (kept.into_iter().map(|(_, meta)| meta).collect(), count)
        };
        // In the writer, what this transaction read or changed of the secret's versions,
        // else (for a secret the batch has not touched) the read cache's list of them or
        // what the writer knows of them as the newest commit left them, else SQL: a put
        // on a secret whose versions the writer followed reads one row by its key instead
        // of walking every version (BENCHMARKS.md, eighteenth session).
        if let Some((touched, cache)) = &self.track {
            if let Some(known) = self.known_versions_of(arn) {
                return self.labelled_versions_known(arn, also, known).map(without_ords);
            }
            let key = read_cache::versions_key(arn);
            if !touched.covers(&key) {
                if let Some(Entry::Versions(every)) = cache.latest(&key) {
                    let kept = every.iter().filter(|v| !v.is_deprecated() || v.version_id == also);
                    return Ok((kept.cloned().collect(), every.len()));
                }
                if let Some(known) = cache.known_versions(arn) {
                    return self.labelled_versions_known(arn, also, known).map(without_ords);
                }
            }
        }
        self.labelled_versions_in_sql(arn, also).map(without_ords)
    }

    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.secret_untouched_or(
            || read_cache::name_key(scope, name),
            || self.secret_by_name_in_sql(scope, name),
        )
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.secret_untouched_or(|| read_cache::arn_key(arn), || self.secret_by_arn_in_sql(arn))
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        self.untouched_or(
            || read_cache::versions_key(arn),
            |entry| match entry {
                Entry::Versions(versions) => Some(versions.to_vec()),
                _ => None,
            },
            None,
            || self.versions_in_sql(arn),
        )
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT v.value FROM version_meta m JOIN version_values v ON v.id = m.value_id \
             WHERE m.arn = ?1 AND m.version_id = ?2",
        )?;
        let value = stmt.query_row(params![arn, version_id], |row| row.get(0)).optional()?;
        Ok(value.map(SealedValue))
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        let mut after = query.after.clone();
        // The first chunk is what the caller expects to need (usually one query
        // for a whole page); later ones double.
        let mut limit = query.expected.map_or(FIRST_CHUNK, |n| (n as i64).clamp(1, MAX_CHUNK));
        loop {
            let rows = self.listing_chunk(scope, query, after.as_ref(), limit)?;
            let complete = (rows.len() as i64) < limit;
            let mut last = None;
            for row in rows {
                let meta = row.decode()?;
                if !visit(&meta) {
                    return Ok(());
                }
                last = Some(meta);
            }
            match last {
                Some(meta) if !complete => after = Some(cursor_of(&meta, query.sort_by)),
                _ => return Ok(()),
            }
            limit = (limit * 2).min(MAX_CHUNK);
        }
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT arn FROM secrets WHERE deletion_ms IS NOT NULL AND deletion_ms <= ?1 \
             ORDER BY deletion_ms, seq",
        )?;
        let arns = stmt.query_map(params![now], |row| row.get(0))?;
        Ok(arns.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT wrapped FROM wrapped_keys WHERE key_id = ?1")?;
        Ok(stmt.query_row(params![key_id], |row| row.get(0)).optional()?)
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let lookup = || -> StoreResult<Option<Vec<u8>>> {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT value FROM records WHERE kind = ?1 AND key = ?2")?;
            Ok(stmt.query_row(params![kind, key], |row| row.get(0)).optional()?)
        };
        match &self.track {
            Some((_, cache)) if cache.caches_kind(kind) => self.untouched_or(
                || read_cache::record_key(kind, key),
                |entry| match entry {
                    Entry::Record(found) => Some(found.map(|bytes| bytes.to_vec())),
                    _ => None,
                },
                // KMS keys and aliases: read by every write that seals, seldom written.
                Some(|found| Entry::Record(found.clone().map(std::sync::Arc::new))),
                lookup,
            ),
            _ => lookup(),
        }
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        // Keys are compared as strings: a prefix range is `key >= prefix`, checked with
        // `substr` so that no LIKE escaping is needed. Without `after`, every key
        // counts, the empty one included.
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value FROM records WHERE kind = ?1 AND key >= ?2 \
             AND (?3 IS NULL OR key > ?3) \
             AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![kind, prefix, after, limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT value FROM settings WHERE name = ?1")?;
        Ok(stmt.query_row(params![name], |row| row.get(0)).optional()?)
    }
}
