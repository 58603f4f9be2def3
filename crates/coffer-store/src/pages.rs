//! Paging through every record of one kind under a key prefix, a page at a time
//! ([`RecordPages`]): the one loop behind every listing of audit chain heads (verify,
//! retention, the sealing of unkeyed heads, LookupEvents), so none of them holds more than
//! a page in memory and none gets the "was that the last page?" test wrong.

use crate::{ReadTxn, StoreResult};

/// One page of a listing: each record's key and bytes, in key order.
pub type Page = Vec<(String, Vec<u8>)>;

/// Where a listing of the records of `kind` under `prefix` has got to.
///
/// The cursor holds no transaction: each [`RecordPages::next_page`] takes the one to read
/// in, so a listing can run in one transaction (a verify, a LookupEvents page), over one
/// read transaction a page (a background count that should not hold a snapshot open), or
/// inside a write transaction that writes between pages (the caller hands the write
/// transaction as a `&dyn ReadTxn` for the read and writes once the page is returned).
#[derive(Debug, Clone)]
pub struct RecordPages<'a> {
    kind: &'a str,
    prefix: &'a str,
    size: usize,
    after: Option<String>,
    done: bool,
}

impl<'a> RecordPages<'a> {
    /// A listing of the records of `kind` whose key starts with `prefix`, in key order,
    /// at most `size` (at least one) a page.
    pub fn new(kind: &'a str, prefix: &'a str, size: usize) -> RecordPages<'a> {
        RecordPages { kind, prefix, size: size.max(1), after: None, done: false }
    }

    /// Whether every record was handed out: a listing over one transaction a page stops
    /// here rather than open one more transaction to read nothing.
    pub fn finished(&self) -> bool {
        self.done
    }

    /// The next page (keys and bytes), or `None` once every record was handed out. A page
    /// shorter than the page size is the last one, so the listing costs no extra read to
    /// learn that it ended.
    pub fn next_page(&mut self, tx: &dyn ReadTxn) -> StoreResult<Option<Page>> {
        if self.done {
            return Ok(None);
        }
        let page = tx.records(self.kind, self.prefix, self.after.as_deref(), self.size)?;
        self.done = page.len() < self.size;
        match page.last() {
            Some((key, _)) => self.after = Some(key.clone()),
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, Store};

    /// Every key under `prefix`, listed `size` at a time, with the pages' lengths.
    fn list(store: &MemoryStore, prefix: &str, size: usize) -> (Vec<String>, Vec<usize>) {
        let (mut keys, mut lens) = (Vec::new(), Vec::new());
        store
            .read(&mut |tx| {
                let mut pages = RecordPages::new("k", prefix, size);
                while let Some(page) = pages.next_page(tx)? {
                    lens.push(page.len());
                    keys.extend(page.into_iter().map(|(k, _)| k));
                }
                Ok(())
            })
            .unwrap();
        (keys, lens)
    }

    fn store_with(keys: &[&str]) -> MemoryStore {
        let store = MemoryStore::new();
        store
            .write(&mut |tx| {
                for key in keys {
                    tx.put_record("k", key, b"v")?;
                }
                tx.put_record("other", "a/1", b"v")
            })
            .unwrap();
        store
    }

    #[test]
    fn every_record_under_the_prefix_once_in_key_order_a_page_at_a_time() {
        let store = store_with(&["a/3", "a/1", "b/1", "a/2", "a/4", "a/5"]);
        let want: Vec<String> = ["a/1", "a/2", "a/3", "a/4", "a/5"].map(String::from).to_vec();
        assert_eq!(list(&store, "a/", 2), (want.clone(), vec![2, 2, 1]));
        assert_eq!(list(&store, "a/", 5), (want.clone(), vec![5]));
        assert_eq!(list(&store, "a/", 100), (want, vec![5]));
        assert_eq!(list(&store, "c/", 2), (vec![], vec![]));
        assert_eq!(list(&store, "", 0).1, vec![1; 6], "a page size of 0 pages one at a time");
    }

    #[test]
    fn a_listing_can_span_transactions_and_write_between_pages() {
        let store = store_with(&["a/1", "a/2", "a/3"]);
        // One write transaction that rewrites each record as it pages.
        store
            .write(&mut |tx| {
                let mut pages = RecordPages::new("k", "a/", 2);
                while let Some(page) = pages.next_page(&*tx)? {
                    for (key, _) in page {
                        tx.put_record("k", &key, b"w")?;
                    }
                }
                Ok(())
            })
            .unwrap();
        // One read transaction a page.
        let mut pages = RecordPages::new("k", "a/", 2);
        let (mut seen, mut reads) = (Vec::new(), 0);
        while !pages.finished() {
            reads += 1;
            store
                .read(&mut |tx| {
                    seen.extend(pages.next_page(tx)?.unwrap_or_default());
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(reads, 2, "the short page ends the listing");
        let want: Vec<(String, Vec<u8>)> =
            ["a/1", "a/2", "a/3"].map(|k| (k.to_string(), b"w".to_vec())).to_vec();
        assert_eq!(seen, want);
    }
}
