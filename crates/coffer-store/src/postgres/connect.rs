//! Connecting to PostgreSQL: the URL and its options, the pool and its runtime, transactions.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use rustls::RootCertStore;
use tokio_postgres::config::SslMode;
use tokio_postgres::{IsolationLevel, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{default_roots, load_roots, tls_connector};
use super::{PostgresStore, backend};
use crate::{StoreError, StoreResult};

/// Connections in the pool unless the URL says `pool_max_size=N`.
pub(super) const DEFAULT_POOL_SIZE: usize = 16;

/// How long a call waits for a free pooled connection, and for a new one.
pub(super) const POOL_WAIT: Duration = Duration::from_secs(30);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A transaction left idle this long (a frozen node) is ended by the server,
/// so its locks cannot block the other nodes for good.
pub(super) const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date and
    /// returns the store. The URL is libpq's (`postgres://user:password@host:port/db?...`);
    /// `sslmode` takes `disable`, `prefer` (the default), `require`,
    /// `verify-ca` and `verify-full`, with `sslrootcert=<PEM file>` or
    /// `sslrootcert=system` for the trusted roots; `pool_max_size=N` sizes the
    /// connection pool; `scrub_delay=<seconds>` is how long a destructive deletion waits
    /// for others to share its scrub (default 300, see `scrub.rs`).
    pub fn open(url: &str) -> StoreResult<Self> {
        let store = Self::connect(url)?;
        let migration = store.migrate()?;
        if migration.from != migration.to {
            tracing::info!(
                from = migration.from,
                to = migration.to,
                store = %store.description,
                "migrated the PostgreSQL schema"
            );
        }
        Ok(store)
    }

    /// Connects without touching the schema; [`PostgresStore::migrate`] is
    /// then the only thing to call before using the store.
    pub fn connect(url: &str) -> StoreResult<Self> {
        let options = ConnectOptions::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the PostgreSQL runtime: {e}"))
            })?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let watcher_config = (options.config.clone(), options.tls.clone());
        let manager = match options.tls {
            None => Manager::from_config(options.config, NoTls, manager_config),
            Some(tls) => Manager::from_config(options.config, tls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    commit_durably(client).await.map_err(deadpool_postgres::HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            writers: std::sync::Mutex::new(()),
            queue: std::sync::Mutex::default(),
            runtime: Some(runtime),
            description: options.description,
            shared: None,
            watcher_config,
            scrub: super::scrub::ScrubState::new(options.scrub_delay),
            id: super::handoff::store_id(),
            known: Default::default(),
        };
        // Fail now, with the reason, rather than at the first request.
        drop(store.checkout().map_err(|e| {
            StoreError::Backend(format!("cannot connect to {}: {e}", store.description))
        })?);
        Ok(store)
    }

    /// Caches records of `kinds` and the settings `settings` across read transactions,
    /// coherent with every node within [`super::STALE_BOUND`], and announces this node's
    /// writes of them to the other nodes (see `shared_cache`). Every process that writes
    /// them on a shared database must be opened with the same lists, or its changes
    /// reach the other nodes only through their own generation reads (never, for
    /// records it changes without such a write).
    pub fn cache_records(mut self, kinds: &[&str], settings: &[&str]) -> Self {
        let cache = std::sync::Arc::new(super::shared_cache::SharedCache::new(kinds, settings));
        let (config, tls) = self.watcher_config.clone();
        let watched = cache.clone();
        match tls {
            None => self.rt().spawn(super::shared_cache::watch(watched, config, NoTls)),
            Some(tls) => self.rt().spawn(super::shared_cache::watch(watched, config, tls)),
        };
        self.shared = Some(cache);
        self
    }

    pub(super) fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the store")
    }

    /// A pooled connection. A connection the server closed while it sat in
    /// the pool is noticed by the pool (or at `BEGIN`, see `begin`) and replaced.
    pub(super) fn checkout(&self) -> StoreResult<Object> {
        super::off_the_workers(|| self.rt().block_on(self.pool.get()))
            .map_err(|e| StoreError::Backend(format!("no PostgreSQL connection could be had: {e}")))
    }

    /// Runs `f` in one transaction of the given kind on a pooled connection.
    /// A connection found dead at `BEGIN` (the server restarted, a network
    /// blip) is replaced once: nothing had been sent on it yet.
    pub(super) fn in_transaction<T>(
        &self,
        isolation: IsolationLevel,
        read_only: bool,
        f: &mut dyn FnMut(Transaction<'_>) -> T,
    ) -> StoreResult<T> {
        let rt = self.rt();
        let mut retried = false;
        loop {
            let mut client = self.checkout()?;
            let begun = super::off_the_workers(|| {
                rt.block_on(
                    client
                        .build_transaction()
                        .isolation_level(isolation)
                        .read_only(read_only)
                        .start(),
                )
            });
            match begun {
                Ok(tx) => return Ok(f(tx)),
                Err(e) if e.is_closed() && !retried => {
                    tracing::warn!("a pooled PostgreSQL connection was closed; reconnecting");
                    retried = true;
                }
                Err(e) => return Err(backend(&e)),
            }
        }
    }
}

/// Everything [`PostgresStore::connect`] takes from a URL.
pub(super) struct ConnectOptions {
    pub(super) config: tokio_postgres::Config,
    /// `None` for `sslmode=disable`.
    pub(super) tls: Option<MakeRustlsConnect>,
    pub(super) pool_size: usize,
    pub(super) scrub_delay: Duration,
    /// The database for logs and errors, without the password.
    pub(super) description: String,
}

/// How far the server's certificate is checked, as libpq's `sslmode` says.
pub(super) enum Verification {
    /// Encrypt but accept any certificate (`prefer` and `require` without a root certificate).
    None,
    /// The chain must lead to a trusted root; the host name is not checked (`verify-ca`).
    Chain(RootCertStore),
    /// The chain and the host name are checked (`verify-full`).
    Full(RootCertStore),
}

impl ConnectOptions {
    pub(super) fn parse(url: &str) -> StoreResult<Self> {
        let invalid =
            |why: String| StoreError::Backend(format!("the PostgreSQL URL is not valid: {why}"));
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("it must start with postgres:// or postgresql://".to_owned()));
        }
        // tokio-postgres knows only three TLS modes and no root certificate
        // option, so those (and the pool size, which is ours) are taken out
        // of the query string before it parses the rest.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let (mut sslmode, mut sslrootcert, mut pool_size) = (None, None, None);
        let mut scrub_delay = super::scrub::DEFAULT_SCRUB_DELAY;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                percent_decode(value).ok_or_else(|| invalid(format!("bad escape in `{key}`")))?;
            match key {
                "sslmode" => sslmode = Some(value),
                "sslrootcert" => sslrootcert = Some(value),
                "pool_max_size" => {
                    let size: usize = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid("pool_max_size must be a positive number".to_owned())
                    })?;
                    pool_size = Some(size);
                }
                "scrub_delay" => {
                    let seconds: u64 = value.parse().map_err(|_| {
                        invalid("scrub_delay must be a number of seconds".to_owned())
                    })?;
                    scrub_delay = Duration::from_secs(seconds);
                }
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                    return Err(invalid(format!("`{key}` (client certificates) is not supported")));
                }
                _ => kept.push(pair),
            }
        }
        let rest =
            if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e: tokio_postgres::Error| invalid(e.to_string()))?;

        let (mode, verification) = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, None),
            // As libpq: a root certificate given with these modes is used to check the chain.
            mode @ ("allow" | "prefer" | "require") => {
                let ssl = if mode == "require" { SslMode::Require } else { SslMode::Prefer };
                let verification = match &sslrootcert {
                    Some(source) => Verification::Chain(load_roots(source)?),
                    None => Verification::None,
                };
                (ssl, Some(verification))
            }
            "verify-ca" => (
                SslMode::Require,
                Some(Verification::Chain(load_roots(&default_roots(sslrootcert)?)?)),
            ),
            "verify-full" => (
                SslMode::Require,
                Some(Verification::Full(load_roots(&default_roots(sslrootcert)?)?)),
            ),
            other => return Err(invalid(format!("unknown sslmode `{other}`"))),
        };
        config.ssl_mode(mode);
        let tls = verification.map(tls_connector).transpose()?;

        if config.get_application_name().is_none() {
            config.application_name("coffer");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(30));
        let timeout =
            format!("-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}");
        let options = match config.get_options() {
            Some(given) => format!("{given} {timeout}"),
            None => timeout,
        };
        config.options(&options);

        let description = describe_config(&config);
        Ok(ConnectOptions {
            config,
            tls,
            pool_size: pool_size.unwrap_or(DEFAULT_POOL_SIZE),
            scrub_delay,
            description,
        })
    }
}

/// Makes a new session wait for its commits' WAL to be flushed: a write is acknowledged
/// only once it is durable. A server, database or role whose `synchronous_commit` is `off`
/// (a setting chosen for speed) answers COMMIT before the WAL is flushed, and a crash of
/// PostgreSQL then forgets writes Coffer acknowledged (issue 19; `faults_postgres.rs`
/// saw it). Any other value (`local`, `on`, `remote_write`, `remote_apply`) already
/// waits for the local flush and is kept, so a stronger replication setting stands.
async fn commit_durably(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let row = client.query_one("SELECT current_setting('synchronous_commit')", &[]).await?;
    let setting: String = row.get(0);
    if setting == "off" {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "PostgreSQL's synchronous_commit is off for this database or role; \
                 Coffer's sessions turn it on, so an acknowledged write survives a crash"
            );
        });
        client.batch_execute("SET synchronous_commit = on").await?;
    }
    Ok(())
}

/// `postgres://user@host:port/db`, never the password.
pub(super) fn describe_config(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
