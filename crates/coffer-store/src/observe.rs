//! What the store reports about its group commits (for the server's `/metrics`), without
//! the store knowing any metrics crate: the server installs one plain function at start,
//! and each group commit calls it with its member count and duration.

use std::sync::OnceLock;
use std::time::Duration;

/// Called once per group commit that ended (committed or rolled back): how many write
/// transactions it carried and the time from its start to its end (SQLite: `BEGIN` to a
/// synced `COMMIT`; PostgreSQL: the batch's first attempt to its last answer, retries
/// after serialization conflicts included).
pub type CommitHook = fn(members: usize, elapsed: Duration);

static HOOK: OnceLock<CommitHook> = OnceLock::new();

/// Installs the hook, once per process (later calls are ignored).
pub fn set_commit_hook(hook: CommitHook) {
    let _ = HOOK.set(hook);
}

/// Reports one group commit to the hook, if one is installed.
pub(crate) fn group_committed(members: usize, elapsed: Duration) {
    if let Some(hook) = HOOK.get() {
        hook(members, elapsed);
    }
}
