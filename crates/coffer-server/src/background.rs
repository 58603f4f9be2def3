//! Background work: carrying out scheduled deletions (of secrets and of KMS keys) and
//! automatic KMS key rotations when their date passes.

use crate::App;
use std::sync::Arc;
use std::time::Duration;

/// How often due deletions are looked for. A deletion is carried out at most this long after its date.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Runs forever: sweeps once at start (deletions that fell due while the server was down) and then periodically.
pub async fn run_deletion_sweeper(app: Arc<App>) {
    loop {
        let sweep_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::secrets::purge_due_deletions(&sweep_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "carried out scheduled secret deletions"),
            Ok(Err(e)) => tracing::error!(error = %e, "scheduled deletion sweep failed"),
            Err(e) => tracing::error!(error = %e, "scheduled deletion sweep panicked"),
        }
        let key_app = app.clone();
        match tokio::task::spawn_blocking(move || {
            crate::kms_api::carry_out_due(&key_app, crate::clock::now_ms())
        })
        .await
        {
            Ok(Ok(work)) if work == coffer_kms::DueWork::default() => {}
            Ok(Ok(work)) => tracing::info!(
                deleted = work.deleted,
                rotated = work.rotated,
                "carried out scheduled KMS key deletions and rotations"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "KMS key sweep failed"),
            Err(e) => tracing::error!(error = %e, "KMS key sweep panicked"),
        }
        tokio::time::sleep(SWEEP_INTERVAL).await;
    }
}
