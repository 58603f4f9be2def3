//! Which store a command works on: `--store` (or `COFFER_STORE`) names one,
//! otherwise it is the SQLite file in the data directory. `coffer migrate`
//! lives here too, since all it does is open a store.

use clap::Args;
use coffer_store::{MemoryStore, PostgresStore, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable that may name the store, as `--store` does.
pub const STORE_ENV: &str = "COFFER_STORE";

/// The database file of the embedded store inside a data directory.
pub const SQLITE_FILE: &str = "coffer.db";

/// The data directory when none is given.
pub const DEFAULT_DATA_DIR: &str = "coffer-data";

/// A store named on the command line.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `memory`: nothing kept after exit.
    Memory,
    /// `sqlite:<file>`: the embedded store in that file.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`: a database several nodes can share.
    Postgres(String),
}

impl std::fmt::Debug for StoreSpec {
    /// A PostgreSQL URL can hold a password, so it is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("Memory"),
            StoreSpec::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreSpec::Postgres(_) => f.write_str("Postgres(***)"),
        }
    }
}

impl StoreSpec {
    /// Parses `--store`; the error never repeats the text, which may hold a password.
    pub fn parse(text: &str) -> Result<StoreSpec, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreSpec::Postgres(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path, as in sqlite:/var/lib/coffer/coffer.db".into()
                );
            }
            return Ok(StoreSpec::Sqlite(PathBuf::from(path)));
        }
        if text == "memory" {
            return Ok(StoreSpec::Memory);
        }
        Err("a store is postgres://..., postgresql://..., sqlite:<file> or memory".to_owned())
    }

    /// Opens the store, creating or migrating its schema as needed.
    pub fn open(&self) -> Result<Arc<dyn Store>, String> {
        self.open_as(false)
    }

    /// Opens the store for a process that changes it (a server, a restore): an SQLite
    /// database is then taken exclusively among such processes (`SqliteStore::exclusive`).
    pub fn open_exclusive(&self) -> Result<Arc<dyn Store>, String> {
        self.open_as(true)
    }

    fn open_as(&self, exclusive: bool) -> Result<Arc<dyn Store>, String> {
        match self {
            StoreSpec::Memory => Ok(Arc::new(MemoryStore::new())),
            StoreSpec::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)?;
                }
                let failed = |e: coffer_store::StoreError| {
                    format!("cannot open the database {}: {e}", path.display())
                };
                let mut store = SqliteStore::open(path)
                    .map_err(failed)?
                    .cache_records(coffer_server::RECORDS_ONLY_THE_SERVER_CHANGES);
                if exclusive {
                    store = store.exclusive().map_err(failed)?;
                }
                Ok(Arc::new(store))
            }
            StoreSpec::Postgres(url) => {
                // Every process on a shared database (servers, `coffer admin`) caches and
                // announces the same records, so each one's changes reach the others'
                // caches within `coffer_store::postgres::STALE_BOUND`.
                let store = PostgresStore::open(url)
                    .map_err(|e| e.to_string())?
                    .cache_records(&RECORDS_SHARED_ACROSS_NODES, &[coffer_iam::GENERATION_SETTING]);
                Ok(Arc::new(store))
            }
        }
    }
}

/// The records every read call reads and almost nothing changes: cached per node on
/// PostgreSQL (see `PostgresStore::cache_records`).
const RECORDS_SHARED_ACROSS_NODES: [&str; 4] = [
    coffer_iam::USER_KIND,
    coffer_iam::ACCESS_KEY_KIND,
    coffer_server::RECORDS_ONLY_THE_SERVER_CHANGES[0],
    coffer_server::RECORDS_ONLY_THE_SERVER_CHANGES[1],
];

/// `--store` and `--data-dir` for the commands that work on a durable store.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The store: postgres://user:password@host:port/db (TLS with ?sslmode=require,
    /// verify-ca or verify-full and `sslrootcert=<file>`), or `sqlite:<file>`.
    /// Without it, the SQLite file in the data directory.
    #[arg(long, env = STORE_ENV, hide_env_values = true, value_parser = StoreSpec::parse)]
    pub store: Option<StoreSpec>,
    /// The data directory whose coffer.db is the store when --store is not given.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

impl StoreArgs {
    /// The store these arguments name; an in-memory store is refused, as
    /// nothing could be kept in it.
    pub fn spec(&self) -> Result<StoreSpec, String> {
        match &self.store {
            Some(StoreSpec::Memory) => {
                Err("the memory store keeps nothing; name a postgres:// or sqlite: store".into())
            }
            Some(spec) => Ok(spec.clone()),
            None => Ok(StoreSpec::Sqlite(self.data_dir.join(SQLITE_FILE))),
        }
    }
}

/// The store `coffer serve` uses, and the directory for its master key (and
/// other node-local files), if any: `--store` when given; otherwise an
/// in-memory store for `--dev` without `--data-dir`; otherwise the SQLite
/// file in the data directory. A PostgreSQL store keeps nothing on disk but
/// the master key, in `--data-dir` (default `coffer-data`) unless the key
/// comes from elsewhere.
pub fn open_for_serve(
    store: Option<&StoreSpec>,
    data_dir: Option<&Path>,
    dev: bool,
) -> Result<(Arc<dyn Store>, Option<PathBuf>), String> {
    let (spec, dir) = locate(store, data_dir, dev);
    if let Some(dir) = &dir {
        create_private_dir(dir)?;
    }
    Ok((spec.open_exclusive()?, dir))
}

/// Which store `coffer serve` with these flags uses and where its master key lives (see
/// [`open_for_serve`]), without opening or creating anything: `coffer admin` finds a
/// server's data by the same rule.
pub fn locate(
    store: Option<&StoreSpec>,
    data_dir: Option<&Path>,
    dev: bool,
) -> (StoreSpec, Option<PathBuf>) {
    let dir_or_default =
        || data_dir.map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_owned);
    let (spec, dir) = match store {
        Some(StoreSpec::Memory) => (StoreSpec::Memory, None),
        Some(StoreSpec::Sqlite(path)) => {
            let beside =
                path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let dir = data_dir.unwrap_or(beside).to_owned();
            (StoreSpec::Sqlite(path.clone()), Some(dir))
        }
        Some(StoreSpec::Postgres(url)) => {
            (StoreSpec::Postgres(url.clone()), Some(dir_or_default()))
        }
        None if dev && data_dir.is_none() => (StoreSpec::Memory, None),
        None => {
            let dir = dir_or_default();
            (StoreSpec::Sqlite(dir.join(SQLITE_FILE)), Some(dir))
        }
    };
    (spec, dir)
}

/// `coffer migrate`: bring a store's schema up to date, and nothing else.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn migrate(args: MigrateArgs) -> Result<(), String> {
    match args.store.spec()? {
        StoreSpec::Postgres(url) => {
            let store = PostgresStore::connect(&url).map_err(|e| e.to_string())?;
            let done = store.migrate().map_err(|e| e.to_string())?;
            if done.from == done.to {
                println!("{}: schema already at version {}", store.describe(), done.to);
            } else {
                println!(
                    "{}: schema migrated from version {} to {}",
                    store.describe(),
                    done.from,
                    done.to
                );
            }
        }
        StoreSpec::Sqlite(path) => {
            let store = SqliteStore::open(&path)
                .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
            let version = store.schema_version().map_err(|e| e.to_string())?;
            println!("{}: schema at version {version}", store.describe());
        }
        StoreSpec::Memory => unreachable!("StoreArgs::spec refuses the memory store"),
    }
    Ok(())
}

pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse_by_their_prefix() {
        assert_eq!(StoreSpec::parse("memory"), Ok(StoreSpec::Memory));
        assert_eq!(StoreSpec::parse("sqlite:/x/y.db"), Ok(StoreSpec::Sqlite("/x/y.db".into())));
        for url in ["postgres://u:p@h/db", "postgresql://h/db?sslmode=require"] {
            assert_eq!(StoreSpec::parse(url), Ok(StoreSpec::Postgres(url.to_owned())));
        }
        assert!(StoreSpec::parse("sqlite:").is_err());
        assert!(StoreSpec::parse("mysql://u:p@h/db").is_err());
    }

    #[test]
    fn a_postgres_password_never_shows_in_errors_or_debug_output() {
        let error = StoreSpec::parse("postgress://u:hunter2@h/db").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        let spec = StoreSpec::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{spec:?}").contains("hunter2"));
    }

    /// `coffer admin` finds a server's store and master key by this rule, so it must be
    /// the one `coffer serve` opens by.
    #[test]
    fn locate_finds_the_store_and_key_directory_as_serve_does() {
        let pg = StoreSpec::Postgres("postgres://h/db".into());
        let dir = Path::new("/srv/c");
        assert_eq!(
            locate(None, Some(dir), false),
            (StoreSpec::Sqlite("/srv/c/coffer.db".into()), Some(dir.to_owned()))
        );
        assert_eq!(
            locate(None, None, false),
            (StoreSpec::Sqlite("coffer-data/coffer.db".into()), Some("coffer-data".into()))
        );
        assert_eq!(locate(None, Some(dir), true).1, Some(dir.to_owned()));
        assert_eq!(locate(None, None, true), (StoreSpec::Memory, None));
        let file = StoreSpec::Sqlite("/x/y.db".into());
        assert_eq!(locate(Some(&file), None, false), (file.clone(), Some("/x".into())));
        assert_eq!(locate(Some(&file), Some(dir), false), (file, Some(dir.to_owned())));
        assert_eq!(locate(Some(&pg), None, false), (pg.clone(), Some("coffer-data".into())));
        assert_eq!(locate(Some(&pg), Some(dir), true), (pg, Some(dir.to_owned())));
    }

    #[test]
    fn without_store_the_data_directory_database_is_used_and_memory_is_refused() {
        let args = StoreArgs { store: None, data_dir: "/srv/coffer".into() };
        assert_eq!(args.spec(), Ok(StoreSpec::Sqlite("/srv/coffer/coffer.db".into())));
        let args = StoreArgs { store: Some(StoreSpec::Memory), data_dir: "d".into() };
        assert!(args.spec().is_err());
    }
}
