//! What a read scope hands to the write that follows it in the same call, as a value the
//! caller carries (the server keeps it in the call's context), never through the thread:
//! so it reaches that call's write and no other.

use std::any::Any;

/// What [`crate::Store::read_scope`] looked up that the call's write may start from (the
/// PostgreSQL store's lookups with their witnesses, `postgres/handoff.rs`), for
/// [`crate::Store::write_after`]. Opaque outside the store: only the store that made it
/// opens it, once (it is moved into the write). Empty from stores that hand nothing.
#[derive(Default)]
pub struct Handoff(Option<Box<dyn Any + Send>>);

impl Handoff {
    /// A handoff that hands nothing.
    pub fn none() -> Self {
        Handoff(None)
    }

    /// Whether nothing is handed.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// A store's own value, handed. Only a [`crate::Store`] makes one: its callers keep
    /// it unopened, from its read scope to its write.
    pub fn new<T: Any + Send>(handed: T) -> Self {
        Handoff(Some(Box::new(handed)))
    }

    /// What was handed, if it is a `T`: for the store that made it (each store hands its
    /// own type, and checks further that it made it itself).
    pub fn open<T: Any>(self) -> Option<T> {
        self.0?.downcast().ok().map(|handed| *handed)
    }
}

impl std::fmt::Debug for Handoff {
    /// Never what was handed (secrets' metadata): only whether something was.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() { "Handoff(none)" } else { "Handoff(..)" })
    }
}
