//! A throwaway PostgreSQL server for tests of this crate and of the binary.
//!
//! [`TestPostgres::start`] runs `initdb` in a fresh temporary directory and
//! starts the server from the installed binaries on a free loopback port, with
//! TLS on (a certificate made by `openssl` for `localhost`, signed by a
//! throwaway CA) and trust authentication. Since `initdb` refuses to run as
//! root, a root test process runs the server as the unprivileged `postgres`
//! user (creating it when missing). The server is watched by a small shell
//! process reading a pipe from the test process: when the pipe closes,
//! because the [`TestPostgres`] was dropped or the test process ended in any
//! way, the watchdog stops the server and deletes its directory.
//!
//! Nothing here skips: a missing PostgreSQL installation is a test failure
//! that says what to install.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to accept connections after it was started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to look for the server binaries when `initdb` is not on `PATH`.
const DEBIAN_BIN_DIRS: &str = "/usr/lib/postgresql";

/// What to tell a developer whose machine lacks PostgreSQL.
const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found: \
    install them (apt-get install -y postgresql; scripts/test.sh does this) or set \
    COFFER_PG_BIN to the directory holding them";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A running throwaway server.
pub struct TestPostgres {
    port: u16,
    base: PathBuf,
    /// The watchdog and the write end of its pipe; closing the pipe stops the server.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// A database created for one test, dropped (connections and all) with this value.
pub struct TestDatabase {
    pub name: String,
    /// A URL for the database without TLS.
    pub url: String,
    admin_url: String,
}

impl TestPostgres {
    /// The server shared by every test of this process, started on first use.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    /// Starts a new server. Panics, saying why, if it cannot.
    pub fn start() -> TestPostgres {
        let bin = find_binaries().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let owner = server_account();
        let mut last_error = String::new();
        // A free port found by binding can be taken by someone else before the
        // server binds it; a few tries make that race harmless.
        for _ in 0..3 {
            match try_start(&bin, owner) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("the test PostgreSQL server did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server's certificate (for `localhost`).
    pub fn ca_certificate(&self) -> PathBuf {
        self.base.join("ca.pem")
    }

    /// The PEM file of a CA that signed nothing the server uses.
    pub fn unrelated_ca_certificate(&self) -> PathBuf {
        self.base.join("other-ca.pem")
    }

    /// `postgres://postgres@<host>:<port>/<database>` followed by `query` (`?...` or empty).
    pub fn url(&self, host: &str, database: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}{query}", self.port)
    }

    /// Creates an empty database with a name no other test uses.
    pub fn create_database(&self) -> TestDatabase {
        let name = format!(
            "coffer_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin_url = self.url("127.0.0.1", "postgres", "?sslmode=disable");
        admin_execute(&admin_url, &format!("CREATE DATABASE \"{name}\""));
        let url = self.url("127.0.0.1", &name, "?sslmode=disable");
        TestDatabase { name, url, admin_url }
    }

    /// Runs `sql` as the superuser in the `postgres` database and returns
    /// every row's columns as text (`None` for NULL).
    pub fn admin_query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        admin_query(&self.url("127.0.0.1", "postgres", "?sslmode=disable"), sql)
    }
}

/// Faults a test can cause (issue 19): each returns once the server answers again.
impl TestPostgres {
    /// Stops the server with a fast shutdown (clients are disconnected, transactions in
    /// flight rolled back) and starts it again.
    pub fn restart(&self) {
        self.stop_and_start("restart");
    }

    /// SIGKILLs the postmaster (its backends follow when they notice) and starts the
    /// server again, which recovers from its WAL.
    pub fn crash(&self) {
        self.stop_and_start("crash");
    }

    /// Stops the server (fast shutdown) and leaves it stopped until [`TestPostgres::start_again`].
    pub fn stop(&self) {
        self.command("stop");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while self.postmaster_pid().is_some() {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a server [`TestPostgres::stop`] stopped.
    pub fn start_again(&self) {
        self.stop_and_start("start");
    }

    /// Ends every connection to `database` but the caller's (`pg_terminate_backend`);
    /// returns how many were ended.
    pub fn terminate_connections(&self, database: &str) -> usize {
        let rows = self.admin_query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            database.replace('\'', "''")
        ));
        rows.iter().filter(|row| row.first() == Some(&Some("t".to_owned()))).count()
    }

    /// The postmaster's pid, from its lock file.
    fn postmaster_pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.base.join("data/postmaster.pid")).ok()?;
        text.lines().next().map(str::to_owned)
    }

    fn command(&self, command: &str) {
        use std::io::Write;
        let mut watchdog = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        let (_, stdin) = watchdog.as_mut().expect("the server is running");
        writeln!(stdin, "{command}").expect("the watchdog takes commands");
        stdin.flush().expect("the watchdog takes commands");
    }

    fn stop_and_start(&self, command: &str) {
        let before = self.postmaster_pid();
        self.command(command);
        let url = self.url("127.0.0.1", "postgres", "?sslmode=disable&connect_timeout=2");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let new = self.postmaster_pid();
            if new.is_some() && new != before && admin_query_result(&url, "SELECT 1").is_ok() {
                return;
            }
            let log = std::fs::read_to_string(self.base.join("server.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "the server did not come back ({command}):\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let taken = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
    }
}

impl TestDatabase {
    /// Runs `sql` as the superuser in this database (test set-up and inspection).
    pub fn execute(&self, sql: &str) {
        let url = self.admin_url.replacen("/postgres?", &format!("/{}?", self.name), 1);
        admin_execute(&url, sql);
    }

    /// Runs `sql` (one or more statements, in one session) as the superuser in this
    /// database and returns every row they answer, as text (`None` for NULL).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.admin_url.replacen("/postgres?", &format!("/{}?", self.name), 1);
        admin_query(&url, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends connections a store may still hold.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(error) = admin_query_result(&self.admin_url, &sql) {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// The directory holding `initdb` and `postgres`.
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("COFFER_PG_BIN").map(PathBuf::from) {
        return has_both(&dir).then_some(dir);
    }
    // `initdb` on PATH is often a link into the versioned directory that also
    // holds `postgres`.
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("initdb")).collect::<Vec<_>>()
    });
    for initdb in on_path {
        if let Ok(real) = std::fs::canonicalize(&initdb)
            && let Some(dir) = real.parent()
            && has_both(dir)
        {
            return Some(dir.to_owned());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_BIN_DIRS)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// The uid and gid to run the server as: `None` to stay who we are, or the
/// `postgres` account's when running as root (which `initdb` refuses).
fn server_account() -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if euid != 0 {
        return None;
    }
    if let Some(ids) = passwd_entry("postgres") {
        return Some(ids);
    }
    let status = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"])
        .arg("postgres")
        .status();
    match (status, passwd_entry("postgres")) {
        (_, Some(ids)) => Some(ids),
        (status, None) => panic!(
            "running as root, the test PostgreSQL server needs an unprivileged `postgres` \
             user, and creating one failed ({status:?})"
        ),
    }
}

/// The uid and gid of `user` from /etc/passwd.
fn passwd_entry(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == user)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// A command that runs as `owner` when one is given.
fn command_as(program: impl AsRef<std::ffi::OsStr>, owner: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{what} could not be run: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn try_start(bin: &Path, owner: Option<(u32, u32)>) -> Result<TestPostgres, String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let base = std::env::temp_dir().join(format!(
        "coffer-pg-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let result = prepare_and_launch(bin, owner, &base);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

fn prepare_and_launch(
    bin: &Path,
    owner: Option<(u32, u32)>,
    base: &Path,
) -> Result<TestPostgres, String> {
    make_certificates(base)?;
    if let Some((uid, gid)) = owner {
        chown_tree(base, uid, gid)?;
    }
    let data = base.join("data");
    run(
        command_as(bin.join("initdb"), owner).current_dir(base).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]),
        "initdb",
    )?;

    let port = free_port()?;
    let log = base.join("server.log");
    // The watchdog starts the server, then waits for its stdin to close and
    // stops the server (immediate shutdown: the data is thrown away anyway)
    // and deletes the directory.
    // It also takes commands, one a line, for fault tests (see `TestPostgres::restart`
    // and `TestPostgres::crash`): it stops the server as told and starts it again,
    // trying until the new one stays up (backends of a SIGKILLed postmaster hold its
    // shared memory until they notice it is gone).
    let script = r#"base=$1; shift
"$@" >"$base/server.log" 2>&1 &
pg=$!
while read -r cmd; do
  case "$cmd" in
    restart|stop) kill -INT "$pg" ;;
    crash) kill -KILL "$pg" ;;
    start) ;;
    *) continue ;;
  esac
  wait "$pg" 2>/dev/null
  [ "$cmd" = stop ] && continue
  tries=0
  while [ "$tries" -lt 200 ]; do
    "$@" >>"$base/server.log" 2>&1 &
    pg=$!
    sleep 0.5
    kill -0 "$pg" 2>/dev/null && break
    tries=$((tries + 1))
  done
done
kill -QUIT "$pg" 2>/dev/null
wait "$pg" 2>/dev/null
rm -rf "$base""#;
    let mut watchdog = command_as("sh", owner)
        .current_dir(base)
        .arg("-c")
        .arg(script)
        .arg("coffer-pg-watchdog")
        .arg(base)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(base)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=300",
            // Durability of a throwaway server does not matter; speed does.
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "ssl=on",
            "-c",
        ])
        .arg(format!("ssl_cert_file={}", base.join("server.pem").display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", base.join("server.key").display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("the watchdog shell could not be started: {e}"))?;
    let stdin = watchdog.stdin.take().expect("stdin is piped");
    let server =
        TestPostgres { port, base: base.to_owned(), watchdog: Mutex::new(Some((watchdog, stdin))) };

    let url = server.url("127.0.0.1", "postgres", "?sslmode=disable&connect_timeout=2");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match admin_query_result(&url, "SELECT 1") {
            Ok(_) => return Ok(server),
            Err(error) => {
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                if server_failed(&log_text) || Instant::now() >= deadline {
                    // Dropping `server` stops the watchdog, which removes the directory.
                    return Err(format!("{error}; server log:\n{log_text}"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the server's log shows it failed. A connection tried while the server is still
/// recovering is turned away with a FATAL line of its own ("the database system is starting
/// up"), which says nothing about the server: the next try gets in.
fn server_failed(log_text: &str) -> bool {
    log_text
        .lines()
        .any(|line| line.contains("FATAL") && !line.contains("the database system is starting up"))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A CA, a server certificate for `localhost` it signed, and an unrelated CA,
/// made with the `openssl` command line tool.
fn make_certificates(base: &Path) -> Result<(), String> {
    let openssl = |args: &[&str], what: &str| {
        run(Command::new("openssl").current_dir(base).args(args), what).map_err(|e| {
            format!("{e} (the test server's TLS certificates are made with the openssl tool)")
        })
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (name, subject) in [("ca", "/CN=coffer test CA"), ("other-ca", "/CN=unrelated CA")] {
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "3", "-subj", subject]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&args, "making a test CA")?;
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(&args, "making the server key")?;
    std::fs::write(
        base.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "3",
            "-extfile",
            "server.ext",
        ],
        "signing the server certificate",
    )?;
    // The server refuses a key others can read.
    std::fs::set_permissions(base.join("server.key"), std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("cannot hand {} to the server's user: {e}", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| e.to_string())?.flatten() {
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Connects to `url` without TLS, runs `sql` (one or more statements) and
/// returns every row's columns as text. It works on a thread of its own, so
/// async tests may call it (and drop a [`TestDatabase`]) without blocking a
/// runtime's worker.
fn admin_query_result(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| admin_query_on_this_thread(url, sql))
            .join()
            .unwrap_or_else(|_| Err("the admin query panicked".to_owned()))
    })
}

fn admin_query_on_this_thread(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query(sql).await.map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        });
        drop(client);
        let _ = driver.await;
        Ok(result?
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    })
}

fn admin_query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    admin_query_result(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn admin_execute(url: &str, sql: &str) {
    admin_query(url, sql);
}

#[cfg(test)]
mod tests {
    use super::server_failed;

    #[test]
    fn a_connection_turned_away_during_startup_is_not_a_failed_server() {
        let starting = "LOG:  database system was shut down\n\
            FATAL:  the database system is starting up\n\
            LOG:  database system is ready to accept connections\n";
        assert!(!server_failed(starting));
        let failed = "FATAL:  could not create lock file \"/tmp/x/.s.PGSQL.5432.lock\"\n";
        assert!(server_failed(failed));
        assert!(server_failed(&format!("{starting}{failed}")));
    }
}
