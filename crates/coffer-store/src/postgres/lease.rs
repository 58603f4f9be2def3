//! Leases elect the one node that does background work; the database's clock judges expiry.

use std::time::Duration;

use tokio_postgres::IsolationLevel;

use super::{PostgresStore, backend, get};
use crate::StoreResult;

impl PostgresStore {
    /// Who holds the lease `name` now, if anyone (for operators and tests).
    pub fn lease_holder(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.checkout()?;
        let row = self
            .rt()
            .block_on(client.query_opt(
                "SELECT holder FROM leases WHERE name = $1 AND expires_at > clock_timestamp()",
                &[&name],
            ))
            .map_err(|e| backend(&e))?;
        row.map(|row| get(&row, 0)).transpose()
    }

    pub(super) fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        // One statement, atomic under READ COMMITTED: it takes a free or
        // expired lease, renews one this holder has, and otherwise changes
        // nothing and returns no row. Expiry is judged by the database's
        // clock, so the nodes' clocks do not need to agree.
        let rt = self.rt();
        let seconds = ttl.as_secs_f64();
        let rows = self.in_transaction(IsolationLevel::ReadCommitted, false, &mut |tx| {
            rt.block_on(async {
                let rows = tx
                    .query(
                        "INSERT INTO leases AS l (name, holder, expires_at) \
                         VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
                         ON CONFLICT (name) DO UPDATE \
                         SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                         WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() \
                         RETURNING l.holder",
                        &[&name, &holder, &seconds],
                    )
                    .await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(rows.len())
            })
        })?;
        Ok(rows.map_err(|e| backend(&e))? == 1)
    }

    pub(super) fn give_up_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let client = self.checkout()?;
        self.rt()
            .block_on(
                client.execute(
                    "DELETE FROM leases WHERE name = $1 AND holder = $2",
                    &[&name, &holder],
                ),
            )
            .map_err(|e| backend(&e))?;
        Ok(())
    }
}
