//! A durable PostgreSQL server of the benchmark's own, for measuring Coffer
//! with `--store postgres://...`.
//!
//! The throwaway server of `coffer_store::testing` runs with `fsync=off`,
//! which is right for tests and wrong here: a benchmark of durable writes
//! needs every commit on disk before it is acknowledged. This one is started
//! from the installed binaries in the benchmark's working directory (so its
//! WAL shares the file system whose synced-write rate is measured) with
//! `fsync=on`, `synchronous_commit=on` and `full_page_writes=on`, checks them
//! once it runs, and otherwise keeps PostgreSQL's defaults. Since `initdb`
//! refuses to run as root, a root benchmark runs the server as the `postgres`
//! user. The server listens on 127.0.0.1 only (no Unix socket) and trusts
//! local connections: nothing but this benchmark can reach it. Databases are
//! created and inspected with the installation's `psql`.
//!
//! The server dies with the benchmark however the benchmark ends: [`Drop`]
//! stops it (immediate shutdown, waiting for it to exit), and the kernel sends
//! it SIGQUIT (PostgreSQL's own immediate shutdown, which ends its backends
//! too) should the benchmark be killed outright.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian and Ubuntu install the server binaries, one directory per major version.
const DEBIAN_BIN_DIRS: &str = "/usr/lib/postgresql";

/// How long the server may take to accept connections, and to shut down.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings that make every acknowledged commit durable; the run refuses a
/// server where they read otherwise.
const DURABILITY: [(&str, &str); 3] =
    [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on")];

/// How much WAL the server keeps ready for reuse (`min_wal_size`), and recycles
/// before the run (`Postgres::recycle_wal`): a server that has been running
/// writes its commits into recycled segment files, while a cluster made for the
/// run would create, zero-fill and sync a new 16 MiB file in the commit path
/// every 16 MiB of WAL (a put writes ~7 KiB of WAL, a read's event ~1 KiB).
pub const WAL_READY: u64 = 1 << 30;

/// An installation that can run a server.
#[derive(Debug, Clone)]
pub struct Install {
    /// The directory holding `initdb` and `postgres`.
    bin: PathBuf,
    /// The `psql` client.
    psql: PathBuf,
    /// The uid and gid to run as, when running as root.
    owner: Option<(u32, u32)>,
}

/// Finds the server binaries (`COFFER_PG_BIN`, then `initdb` on `PATH`, then the
/// newest version under /usr/lib/postgresql), and who may run them. The error
/// says why there is no server to measure.
pub fn find() -> Result<Install, String> {
    let bin = find_binaries().ok_or(
        "no PostgreSQL server binaries (initdb, postgres) found on PATH, in \
         /usr/lib/postgresql/*/bin or in COFFER_PG_BIN",
    )?;
    let psql = Some(bin.join("psql"))
        .filter(|p| p.is_file())
        .or_else(|| on_path("psql"))
        .ok_or("the server binaries were found, but no psql beside them or on PATH")?;
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    let owner = if euid == 0 {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Some(passwd_entry(&passwd, "postgres").ok_or(
            "running as root, and initdb refuses root, but there is no `postgres` user to run \
             the server as",
        )?)
    } else {
        None
    };
    Ok(Install { bin, psql, owner })
}

/// `program` in a directory of `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn find_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("COFFER_PG_BIN").map(PathBuf::from) {
        return has_server(&dir).then_some(dir);
    }
    // `initdb` on PATH is often a link into the versioned directory that also holds `postgres`.
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if let Ok(real) = std::fs::canonicalize(dir.join("initdb"))
                && let Some(dir) = real.parent()
                && has_server(dir)
            {
                return Some(dir.to_owned());
            }
        }
    }
    let versions = std::fs::read_dir(DEBIAN_BIN_DIRS)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            Some((entry.file_name().to_str()?.to_owned(), entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir));
    newest_version(versions)
}

/// The directory of the highest version among `(version, directory)` pairs
/// (`9.6` < `15`); names that are not versions are passed over.
fn newest_version(dirs: impl IntoIterator<Item = (String, PathBuf)>) -> Option<PathBuf> {
    let parse = |name: &str| -> Option<Vec<u32>> {
        name.split('.').map(|part| part.parse().ok()).collect()
    };
    dirs.into_iter()
        .filter_map(|(name, dir)| Some((parse(&name)?, dir)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, dir)| dir)
}

/// The uid and gid of `user` in the text of /etc/passwd.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == user {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// The command line settings of the server: loopback TCP only, durable commits.
fn server_settings(port: u16) -> Vec<String> {
    let mut settings = vec![
        format!("port={port}"),
        "listen_addresses=127.0.0.1".to_owned(),
        // No Unix socket: its path could exceed the length limit in a deep working directory.
        "unix_socket_directories=".to_owned(),
    ];
    settings.extend(DURABILITY.iter().map(|(name, value)| format!("{name}={value}")));
    // Checkpoints keep this much WAL for reuse rather than deleting it (`recycle_wal`).
    settings.push(format!("min_wal_size={}MB", WAL_READY >> 20));
    settings
}

/// What a running server reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    /// `name=value` of the settings that matter to the measurement, as the server reads them.
    pub settings: Vec<(String, String)>,
}

/// The settings read back from the server, in order: the durability ones, then others worth reporting.
const REPORTED: [&str; 7] = [
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "min_wal_size",
    "shared_buffers",
    "max_connections",
];

impl ServerFacts {
    /// Why the server's commits are not durable, if they are not.
    pub fn durability_problem(&self) -> Option<String> {
        let wrong: Vec<String> = DURABILITY
            .iter()
            .filter(|(name, want)| {
                self.settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
                    != Some(*want)
            })
            .map(|(name, want)| {
                let have = self
                    .settings
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("unknown", |(_, v)| v.as_str());
                format!("{name}={have} (wanted {want})")
            })
            .collect();
        (!wrong.is_empty())
            .then(|| format!("the server's commits would not be durable: {}", wrong.join(", ")))
    }

    /// `PostgreSQL 15.4 (fsync=on, ...)`.
    pub fn describe(&self) -> String {
        let settings: Vec<String> =
            self.settings.iter().map(|(name, value)| format!("{name}={value}")).collect();
        format!("PostgreSQL {} ({})", self.version, settings.join(", "))
    }
}

/// A running server, stopped when dropped.
pub struct Postgres {
    child: Child,
    port: u16,
    psql: PathBuf,
    pub facts: ServerFacts,
}

impl Install {
    /// Creates a cluster in `base/data` (`base` must not exist yet). When the
    /// server runs as another user, `base` is handed to it and `base`'s parent
    /// is opened for traversal (mode 0711), which it needs to reach its files.
    pub fn init(&self, base: &Path) -> Result<(), String> {
        std::fs::create_dir(base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(base, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to the postgres user: {e}", base.display()))?;
            if let Some(parent) = base.parent() {
                let mode = std::fs::metadata(parent).map_err(|e| e.to_string())?.mode();
                std::fs::set_permissions(
                    parent,
                    std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
                )
                .map_err(|e| e.to_string())?;
            }
        }
        let output = self
            .command("initdb")
            .current_dir(base)
            .arg("-D")
            .arg(base.join("data"))
            // `--no-sync` skips only initdb's own final flush of the new files;
            // the server that runs on them syncs every commit.
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Starts the server on the cluster in `base/data`, logging to `log`, and
    /// waits until it answers and its settings are checked.
    pub async fn start(&self, base: &Path, log: &Path) -> Result<Postgres, String> {
        let mut last_error = String::new();
        // A port found free can be taken before the server binds it; a few
        // tries make that race harmless.
        for _ in 0..3 {
            match self.try_start(base, log).await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn try_start(&self, base: &Path, log: &Path) -> Result<Postgres, String> {
        let port = crate::servers::free_port().map_err(|e| e.to_string())?;
        let log_file = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_copy = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command("postgres");
        cmd.current_dir(base).arg("-D").arg(base.join("data"));
        for setting in server_settings(port) {
            cmd.arg("-c").arg(setting);
        }
        crate::servers::die_with_parent(&mut cmd, libc::SIGQUIT);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let mut server = Postgres {
            child,
            port,
            psql: self.psql.clone(),
            facts: ServerFacts { version: String::new(), settings: vec![] },
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match server.query("postgres", "SELECT 1").await {
                Ok(_) => break,
                Err(e) => {
                    let exited = server.child.try_wait().ok().flatten();
                    if exited.is_some() || Instant::now() >= deadline {
                        let log_text = std::fs::read_to_string(log).unwrap_or_default();
                        let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        return Err(format!(
                            "the PostgreSQL server did not start ({e}); its log ends: {}",
                            tail.join(" / ")
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut sql = "SELECT current_setting('server_version')".to_owned();
        for name in REPORTED {
            sql.push_str(&format!(", current_setting('{name}')"));
        }
        let rows = server.query("postgres", &sql).await?;
        let row = rows.first().ok_or("the server's settings could not be read")?;
        let text = |i: usize| row.get(i).cloned().unwrap_or_default();
        server.facts = ServerFacts {
            version: text(0),
            settings: REPORTED
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), text(i + 1)))
                .collect(),
        };
        if let Some(problem) = server.facts.durability_problem() {
            return Err(problem);
        }
        Ok(server)
    }

    /// One of the server's programs, run as the server's user.
    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Postgres {
    /// The postmaster's process id: with its children, the whole server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A URL for `database` as the superuser, without TLS.
    pub fn url(&self, database: &str) -> String {
        database_url(self.port, database)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, String> {
        self.query("postgres", &format!("CREATE DATABASE \"{name}\"")).await?;
        Ok(self.url(name))
    }

    /// `pg_database_size` of a database, in bytes.
    pub async fn database_bytes(&self, name: &str) -> Option<u64> {
        let rows =
            self.query("postgres", &format!("SELECT pg_database_size('{name}')")).await.ok()?;
        rows.first()?.first()?.parse().ok()
    }

    /// Runs `sql` in `database` with `psql` and returns every row's columns as text.
    async fn query(&self, database: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let mut url = self.url(database);
        url.push_str("&connect_timeout=2");
        let mut cmd = Command::new(&self.psql);
        cmd.arg(url)
            // No ~/.psqlrc, unaligned rows of tab-separated fields, no headers or footers.
            .args(["-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot run {}: {e}", self.psql.display()))?;
        if !output.status.success() {
            return Err(format!("psql: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(parse_rows(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Stops the server with a fast shutdown (a final checkpoint, so it can be
    /// started again on the same data quickly) and waits for it to exit.
    pub fn stop(mut self) -> Result<(), String> {
        self.shut_down(libc::SIGINT)
    }

    /// Stops the server the way a crash would (immediate shutdown: no checkpoint, so the
    /// next start replays the WAL), and waits for it to exit.
    pub fn crash(mut self) -> Result<(), String> {
        self.shut_down(libc::SIGQUIT)
    }

    /// Makes the server hold `bytes` of WAL segments ready for reuse, as a server
    /// that has been running does (see [`WAL_READY`]).
    /// Each segment switched to is created once; the checkpoint after them then
    /// renames those behind it to the names ahead (up to `min_wal_size`), which is
    /// what a running server's checkpoints do with the WAL they no longer need.
    /// Gives the number of segment files then ready.
    pub async fn recycle_wal(&self, bytes: u64) -> Result<usize, String> {
        let rows = self
            .query("postgres", "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
            .await?;
        let segment: u64 = rows
            .first()
            .and_then(|row| row.first())
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or("the server's WAL segment size could not be read")?;
        let segments = bytes.div_ceil(segment);
        // A switch does nothing in a segment with no record: a message goes first.
        let fill = format!(
            "DO $$ BEGIN FOR i IN 1..{segments} LOOP \
               PERFORM pg_logical_emit_message(false, 'coffer-bench', 'recycle'); \
               PERFORM pg_switch_wal(); \
             END LOOP; END $$"
        );
        self.query("postgres", &fill).await?;
        self.query("postgres", "CHECKPOINT").await?;
        self.wal_segments_ahead().await
    }

    /// How many WAL segment files lie ahead of the one being written: files
    /// the next commits reuse instead of creating.
    pub async fn wal_segments_ahead(&self) -> Result<usize, String> {
        let rows = self
            .query(
                "postgres",
                "SELECT count(*) FROM pg_ls_waldir() \
                 WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_lsn())",
            )
            .await?;
        rows.first()
            .and_then(|row| row.first())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "the WAL directory could not be listed".to_owned())
    }

    /// The server's data directory's `pg_wal`, to watch the WAL's size.
    pub fn wal_dir(base: &Path) -> PathBuf {
        base.join("data").join("pg_wal")
    }

    fn shut_down(&mut self, signal: libc::c_int) -> Result<(), String> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        // SAFETY: kill(2) with the pid of our own child, which is not reaped yet,
        // so the pid cannot belong to another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            // The postmaster exits only after every backend it started has.
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("the PostgreSQL server did not stop within {SHUTDOWN_TIMEOUT:?}: killed"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: the run is over or failed, and the data is not reused.
        let _ = self.shut_down(libc::SIGQUIT);
    }
}

fn database_url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// The rows `psql -A -t -F '\t'` printed.
fn parse_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_directory_is_chosen_numerically() {
        let dirs = ["9.6", "15", "13", "latest", "16.beta"]
            .map(|v| (v.to_owned(), PathBuf::from(format!("/pg/{v}/bin"))));
        assert_eq!(newest_version(dirs), Some(PathBuf::from("/pg/15/bin")));
        assert_eq!(newest_version(Vec::new()), None);
    }

    #[test]
    fn the_postgres_account_is_read_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
    }

    #[test]
    fn the_server_is_told_to_sync_every_commit_and_listen_on_loopback_only() {
        let settings = server_settings(5433);
        for wanted in [
            "fsync=on",
            "synchronous_commit=on",
            "full_page_writes=on",
            "listen_addresses=127.0.0.1",
            "port=5433",
        ] {
            assert!(settings.iter().any(|s| s == wanted), "{wanted} missing from {settings:?}");
        }
        assert!(!settings.iter().any(|s| s.contains("=off")));
    }

    fn facts(pairs: &[(&str, &str)]) -> ServerFacts {
        ServerFacts {
            version: "15.4".to_owned(),
            settings: pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_server_that_does_not_sync_its_commits_is_refused() {
        let durable = facts(&[
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
            ("wal_sync_method", "fdatasync"),
        ]);
        assert_eq!(durable.durability_problem(), None);
        assert_eq!(
            durable.describe(),
            "PostgreSQL 15.4 (fsync=on, synchronous_commit=on, full_page_writes=on, \
             wal_sync_method=fdatasync)"
        );
        let lax = facts(&[("fsync", "off"), ("synchronous_commit", "local")]);
        assert_eq!(
            lax.durability_problem().unwrap(),
            "the server's commits would not be durable: fsync=off (wanted on), \
             synchronous_commit=local (wanted on), full_page_writes=unknown (wanted on)"
        );
    }

    #[test]
    fn psql_rows_are_split_into_fields() {
        assert_eq!(
            parse_rows("15.4\ton\tfdatasync\n\n42\t\tx\n"),
            vec![vec!["15.4", "on", "fdatasync"], vec!["42", "", "x"]]
        );
        assert!(parse_rows("").is_empty());
    }

    /// The processes whose parent is `pid`.
    fn children_of(pid: u32) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|child| {
                std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
                    rest.split_whitespace().nth(1) == Some(pid.to_string().as_str())
                })
            })
            .collect()
    }

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_started_server_syncs_commits_and_leaves_no_process_behind() {
        // The benchmark runs without PostgreSQL when none is installed; so does this test.
        let install = match find() {
            Ok(install) => install,
            Err(why) => {
                eprintln!("not run: {why}");
                return;
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("pg");
        install.init(&base).unwrap();
        runtime.block_on(async {
            let pg = install.start(&base, &dir.path().join("pg.log")).await.unwrap();
            assert_eq!(pg.facts.durability_problem(), None, "{}", pg.facts.describe());
            let url = pg.create_database("bench_test").await.unwrap();
            assert!(url.ends_with("/bench_test?sslmode=disable"));
            assert!(pg.database_bytes("bench_test").await.unwrap() > 1_000_000);
            assert!(pg.create_database("bench_test").await.unwrap_err().contains("already exists"));
            // A fresh cluster creates (zero-fills and syncs) a WAL segment every 16 MiB
            // of WAL, in the commit path; once recycled, the next 64 MiB reuse files.
            // (16 segments: more than PostgreSQL's default `min_wal_size` keeps.)
            assert!(pg.wal_segments_ahead().await.unwrap() < 4);
            let ahead = pg.recycle_wal(256 << 20).await.unwrap();
            assert_eq!(ahead, pg.wal_segments_ahead().await.unwrap());
            assert!(ahead >= 16, "{ahead} segments ready after recycling 256 MiB");
            let (postmaster, backends) = (pg.pid(), children_of(pg.pid()));
            assert!(!backends.is_empty(), "a running server has background processes");
            pg.stop().unwrap();
            assert!(!alive(postmaster));
            assert!(backends.iter().all(|&b| !alive(b)), "a backend outlived the server");

            // Started again on the same data, then dropped as on an error.
            let pg = install.start(&base, &dir.path().join("pg2.log")).await.unwrap();
            assert!(pg.database_bytes("bench_test").await.is_some());
            let (postmaster, backends) = (pg.pid(), children_of(pg.pid()));
            drop(pg);
            assert!(!alive(postmaster));
            assert!(backends.iter().all(|&b| !alive(b)), "a backend outlived the server");
        });
    }

    #[test]
    fn database_urls_name_the_superuser_and_disable_tls() {
        assert_eq!(
            database_url(5433, "coffer_bench"),
            "postgres://postgres@127.0.0.1:5433/coffer_bench?sslmode=disable"
        );
    }
}
