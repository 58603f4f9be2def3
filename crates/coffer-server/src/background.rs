//! Background work: carrying out scheduled deletions (of secrets and of KMS keys) and
//! automatic KMS key rotations when their date passes.

use crate::App;
use std::sync::Arc;
use std::time::Duration;

/// How often due deletions are looked for. A deletion is carried out at most this long after its date.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The lease that elects the one node doing background work when several
/// share a database. Single-node stores grant it to every caller.
pub const BACKGROUND_LEASE: &str = "background-work";

/// This node's part in background work: its name in the lease table and how
/// often it works (and renews its lease).
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub interval: Duration,
}

impl Node {
    /// A node with a name no other running node has: host, process id and a random tag.
    pub fn new(interval: Duration) -> Node {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let id = format!("{host}:{}:{:08x}", std::process::id(), rand::random::<u32>());
        Node { id, interval }
    }

    /// How long the lease lasts without renewal: three rounds, so one slow
    /// round does not hand the work over, while a dead node is replaced
    /// within three rounds.
    pub fn lease_ttl(&self) -> Duration {
        self.interval * 3
    }

    /// Takes or renews the lease; true while this node is the one to work.
    async fn lead(&self, app: &Arc<App>, leading: &mut bool) -> bool {
        let (store, id, ttl) = (app.store.clone(), self.id.clone(), self.lease_ttl());
        let held = tokio::task::spawn_blocking(move || {
            store.try_acquire_lease(BACKGROUND_LEASE, &id, ttl)
        })
        .await;
        let now = match held {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not take or renew the background-work lease");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "the background-work lease check panicked");
                false
            }
        };
        if now != *leading {
            if now {
                tracing::info!(node = %self.id, "this node now does the background work");
            } else {
                tracing::info!(node = %self.id, "another node does the background work now");
            }
            *leading = now;
        }
        now
    }
}

/// Runs forever: sweeps once at start (deletions that fell due while the
/// server was down) and then every `node.interval`, but only while this node
/// holds the background-work lease, so several nodes on one database do the
/// work once between them. The work is transactional, so even the rare
/// overlap of an old and a new lease holder does no harm.
pub async fn run_deletion_sweeper(app: Arc<App>, node: Node) {
    // A rotation claimed by a node that died is taken over once its lease would have run out.
    app.rotation.set_claim_ttl(node.lease_ttl());
    let mut leading = false;
    loop {
        // Every node, leader or not: unwrapped key materials and opened access-key
        // secrets that can no longer be used (expired, or of keys deleted elsewhere)
        // leave memory.
        app.keys.kms().prune_cache();
        if let Some(iam) = &app.iam {
            iam.prune_cache();
        }
        // Every node: how many audit events the store holds, for /metrics.
        let measure_app = app.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || crate::audit_retention::measure(&measure_app)).await
        {
            tracing::warn!(error = %e, "could not count the stored audit events");
        }
        if !node.lead(&app, &mut leading).await {
            tokio::time::sleep(node.interval).await;
            continue;
        }
        let sweep_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::audit::purge_due_deletions(&sweep_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "carried out scheduled secret deletions"),
            Ok(Err(e)) => tracing::error!(error = %e, "scheduled deletion sweep failed"),
            Err(e) => tracing::error!(error = %e, "scheduled deletion sweep panicked"),
        }
        let rotation_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::rotation::runner::sweep(&rotation_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(rotations = n, "started or resumed due rotations"),
            Ok(Err(e)) => tracing::error!(error = %e.message, "rotation sweep failed"),
            Err(e) => tracing::error!(error = %e, "rotation sweep panicked"),
        }
        let key_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::kms_api::carry_out_due(&key_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(work)) if work.is_empty() => {}
            Ok(Ok(work)) => tracing::info!(
                deleted = work.deleted.len(),
                rotated = work.rotated.len(),
                "carried out scheduled KMS key deletions and rotations"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "KMS key sweep failed"),
            Err(e) => tracing::error!(error = %e, "KMS key sweep panicked"),
        }
        // Audit events past the retention period go to archive files (no-op when off).
        let retention_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::audit_retention::run_round(&retention_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit retention failed"),
            Err(e) => tracing::error!(error = %e, "audit retention panicked"),
        }
        // Deleted rows (due deletions just now, ForceDeleteWithoutRecovery and key
        // material replaced since the last round) must leave the store's files, not only
        // its tables. On SQLite this truncates a non-empty WAL: at most one checkpoint
        // per round.
        let store = app.store.clone();
        match tokio::task::spawn_blocking(move || store.scrub_deleted()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not scrub deleted rows"),
            Err(e) => tracing::error!(error = %e, "scrubbing deleted rows panicked"),
        }
        tokio::time::sleep(node.interval).await;
    }
}
