//! The servers under test as child processes: Coffer (SQLite, PostgreSQL or
//! `--dev`), moto's server and the HTTP ceiling. Each binds 127.0.0.1 only and is
//! killed when its handle is dropped.

use crate::client::{Conn, Endpoint};
use crate::sigv4::Credentials;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The credentials sent where the server names none (moto, `--dev`, the ceiling).
pub fn bench_credentials() -> Credentials {
    Credentials {
        access_key_id: "AKIACOFFERBENCH00000".to_string(),
        secret_access_key: "coffer-bench-secret-access-key-000000000".to_string(),
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub endpoint: Endpoint,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }

    /// Stops the process (SIGKILL, then reaps it).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Makes the kernel send `signal` to a child when this process ends, however
/// it ends (even by SIGKILL), so no server outlives an interrupted benchmark.
/// The closure runs after the child's user is switched (`Command::uid`), which
/// would otherwise clear the setting.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to run Coffer.
#[derive(Debug, Clone)]
pub enum CofferMode {
    /// The default durable store in this data directory.
    Sqlite(PathBuf),
    /// `--store <url>`, with the master key and the administrator's
    /// credentials in `data_dir`.
    Postgres { url: String, data_dir: PathBuf },
    /// `--dev`: in memory.
    Dev,
}

fn coffer_command(
    bin: &Path,
    mode: &CofferMode,
    listen: &str,
    log: &Path,
    extra: &[String],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--listen").arg(listen).args(extra);
    // The benchmark measures how fast Coffer can answer, far beyond AWS's request quotas,
    // which `coffer serve` enforces by default outside --dev.
    cmd.arg("--quotas").arg("off");
    match mode {
        CofferMode::Sqlite(dir) => {
            cmd.arg("--data-dir").arg(dir);
        }
        CofferMode::Postgres { url, data_dir } => {
            cmd.arg("--store").arg(url).arg("--data-dir").arg(data_dir);
        }
        CofferMode::Dev => {
            cmd.arg("--dev");
        }
    }
    cmd.env_remove("COFFER_MASTER_KEY").env_remove("COFFER_STORE");
    die_with_parent(&mut cmd, libc::SIGKILL);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    match std::fs::File::create(log) {
        Ok(file) => cmd.stderr(file),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    cmd
}

/// The first `aws_access_key_id`/`aws_secret_access_key` pair of an AWS credentials file.
pub fn parse_credentials_file(text: &str) -> Option<Credentials> {
    let mut id = None;
    let mut secret = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "aws_access_key_id" if id.is_none() => id = Some(value.trim().to_string()),
            "aws_secret_access_key" if secret.is_none() => secret = Some(value.trim().to_string()),
            _ => {}
        }
    }
    Some(Credentials { access_key_id: id?, secret_access_key: secret? })
}

/// The credentials a Coffer with this mode accepts: the administrator's key
/// from the data directory when the server wrote one, else any.
pub fn coffer_credentials(mode: &CofferMode) -> Credentials {
    let dir = match mode {
        CofferMode::Sqlite(dir) | CofferMode::Postgres { data_dir: dir, .. } => Some(dir),
        CofferMode::Dev => None,
    };
    if let Some(dir) = dir
        && let Ok(text) = std::fs::read_to_string(dir.join("admin-credentials"))
        && let Some(creds) = parse_credentials_file(&text)
    {
        return creds;
    }
    bench_credentials()
}

/// Waits for the `listening on http://ADDR` line a server prints at start.
fn wait_for_listening(child: &mut Child, what: &str) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut sent = false;
        // Keep draining after the address line so the server never blocks on a full pipe.
        while let Some(Ok(line)) = lines.next() {
            if !sent && let Some(rest) = line.strip_prefix("listening on http://") {
                let _ = tx.send(rest.trim().to_string());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| format!("{what} did not print its address within 60 s"))?;
    addr.parse().map_err(|e| format!("{what} printed a bad address {addr}: {e}"))
}

/// Starts Coffer on a free port and waits until it listens.
pub fn start_coffer(
    bin: &Path,
    mode: CofferMode,
    label: &str,
    log: &Path,
) -> Result<Server, String> {
    start_coffer_with(bin, mode, label, log, &[])
}

/// [`start_coffer`] with more `coffer serve` arguments (the soak's retention settings).
pub fn start_coffer_with(
    bin: &Path,
    mode: CofferMode,
    label: &str,
    log: &Path,
    extra: &[String],
) -> Result<Server, String> {
    let mut child = coffer_command(bin, &mode, "127.0.0.1:0", log, extra)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr = match wait_for_listening(&mut child, label) {
        Ok(addr) => addr,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{e} (log: {})", log.display()));
        }
    };
    Ok(Server { child, endpoint: Endpoint::new(addr, coffer_credentials(&mode)) })
}

/// Starts this binary's HTTP ceiling server with a body of `body_bytes`.
pub fn start_ceiling(body_bytes: usize) -> Result<Server, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    die_with_parent(&mut cmd, libc::SIGKILL);
    let mut child = cmd
        .args(["ceiling-server", "--listen", "127.0.0.1:0", "--body-bytes"])
        .arg(body_bytes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the ceiling server: {e}"))?;
    let addr = wait_for_listening(&mut child, "the ceiling server")?;
    Ok(Server { child, endpoint: Endpoint::new(addr, bench_credentials()) })
}

/// Starts `moto_server` on a free port and waits until it answers a signed call.
pub async fn start_moto(bin: &Path, log: &Path) -> Result<(Server, Duration), String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p"]).arg(port.to_string()).stdin(Stdio::null());
    die_with_parent(&mut cmd, libc::SIGKILL);
    match std::fs::File::create(log) {
        Ok(file) => {
            let copy = file.try_clone().map_err(|e| e.to_string())?;
            cmd.stdout(file).stderr(copy);
        }
        Err(_) => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Server { child, endpoint: Endpoint::new(addr, bench_credentials()) };
    let (status, elapsed) =
        first_answer(&server.endpoint, started, Duration::from_secs(60)).await?;
    if status != 200 {
        return Err(format!("moto_server answered its first call with HTTP {status}"));
    }
    Ok((server, elapsed))
}

/// The time from `started` until `endpoint` answers a signed ListSecrets (any
/// HTTP status), polling every 200 µs; also that answer's status.
pub async fn first_answer(
    endpoint: &Endpoint,
    started: Instant,
    limit: Duration,
) -> Result<(u16, Duration), String> {
    let body = br#"{"MaxResults":1}"#;
    loop {
        let mut conn = Conn::new(endpoint.addr);
        if let Ok(response) = conn.send(&endpoint.request("ListSecrets", body)).await {
            return Ok((response.status, started.elapsed()));
        }
        if started.elapsed() > limit {
            return Err(format!("no answer from {} within {limit:?}", endpoint.addr));
        }
        // A blocking sleep: nothing else runs while start-up is timed, and
        // tokio's timer would round the poll interval up to a millisecond.
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What one start of Coffer measured.
#[derive(Debug, Clone)]
pub struct StartUp {
    pub to_first_answer: Duration,
    pub first_status: u16,
    /// Resident memory one second after the first answer.
    pub idle_rss: Option<u64>,
}

/// Starts Coffer on a known free port, times the first successful request, then
/// waits a second and reads its idle memory. The server is returned running.
pub async fn time_coffer_start(
    bin: &Path,
    mode: CofferMode,
    log: &Path,
) -> Result<(Server, StartUp), String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = coffer_command(bin, &mode, &listen, log, &[])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut endpoint = Endpoint::new(addr, coffer_credentials(&mode));
    // At first start the server writes its administrator's key while starting:
    // until the key file is read, calls are refused; keep asking (with the key
    // read afresh) until one succeeds, which is what a client waits for.
    let limit = Duration::from_secs(30);
    let (first_status, to_first_answer) = loop {
        match first_answer(&endpoint, started, limit).await {
            Ok((status, _)) if status != 200 && started.elapsed() < limit => {
                endpoint.creds = coffer_credentials(&mode);
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(answer) => break answer,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_bytes(child.id());
    let server = Server { child, endpoint };
    Ok((server, StartUp { to_first_answer, first_status, idle_rss }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_pair_of_a_credentials_file_is_used() {
        let text = "[coffer-admin]\naws_access_key_id = AKIA1\naws_secret_access_key=abc/def\n\n[other]\naws_access_key_id = AKIA2\naws_secret_access_key = zzz\n";
        let creds = parse_credentials_file(text).unwrap();
        assert_eq!(creds.access_key_id, "AKIA1");
        assert_eq!(creds.secret_access_key, "abc/def");
        assert!(parse_credentials_file("[x]\naws_access_key_id = A\n").is_none());
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
