//! Where the `coffer:jwks-file` tag of an OIDC provider may point: only into the
//! directory the operator names with `--jwks-dir`, and only at a regular file of at most
//! [`MAX_FILE`] bytes.
//!
//! The tag is set through the IAM API by whoever may call CreateOpenIDConnectProvider in
//! an account, which on a shared server is a tenant, not the operator. Unchecked, it had
//! the server read any `.json` path it can read (another tenant's key set, a FIFO that
//! blocks a worker thread for ever, a file of any size read whole into memory), and tell
//! from its answers whether that path held a key set (review 10, finding 01). The file
//! names the operator's own directory, so only the operator decides which files are keys.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest key set read from a file (the same bound as a fetched document).
pub const MAX_FILE: u64 = 256 * 1024;

/// Why a tag's path is refused at CreateOpenIDConnectProvider (an `InvalidInput`).
pub fn refusal(dir: Option<&Path>, path: &str) -> Option<String> {
    let tag = coffer_iam::oidc::JWKS_FILE_TAG;
    let Some(dir) = dir else {
        return Some(format!(
            "The tag {tag} is not enabled on this server: its operator names the directory of \
             key set files with --jwks-dir."
        ));
    };
    (!lexically_inside(dir, Path::new(path)))
        .then(|| format!("The tag {tag} must name a .json file in this server's --jwks-dir."))
}

/// Whether `path` is absolute, has no `..`, and starts with `dir` (both as written).
fn lexically_inside(dir: &Path, path: &Path) -> bool {
    path.is_absolute()
        && !path.components().any(|c| matches!(c, Component::ParentDir))
        && path.starts_with(dir)
        && path != dir
}

/// Reads the key set file `path`, if it is a regular file inside `dir` once every link is
/// resolved, and at most [`MAX_FILE`] bytes long. Blocking: call off the async workers.
///
/// The path is checked first (so that a link to a device outside the directory is never
/// even opened), then opened beneath the directory (`openat2` with `RESOLVE_BENEATH`: no
/// component, link or `..` may leave it, whatever was swapped in since the checks), without
/// blocking (a FIFO would wait for a writer) and never as a controlling terminal; what was
/// opened is checked again to be a regular file (review 11, finding 05).
pub fn read(dir: Option<&Path>, path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let refused = |why: &str| Error::new(ErrorKind::PermissionDenied, why.to_string());
    let dir = dir.ok_or_else(|| refused("no --jwks-dir: the coffer:jwks-file tag is off"))?;
    let dir: PathBuf = dir.canonicalize()?;
    let file = Path::new(path).canonicalize()?;
    if !lexically_inside(&dir, &file) {
        return Err(refused("the file is outside --jwks-dir"));
    }
    // Checked before opening: opening some devices has effects of its own.
    if !std::fs::metadata(&file)?.is_file() {
        return Err(refused("not a regular file"));
    }
    #[cfg(test)]
    BEFORE_OPEN.with(|hook| hook.take().map(|f| f()));
    let opened = open_beneath(&dir, &file)?;
    if !opened.metadata()?.is_file() {
        return Err(refused("not a regular file"));
    }
    let mut bytes = Vec::new();
    opened.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(refused("the file is larger than a key set may be"));
    }
    Ok(bytes)
}

/// Opens `file` (inside `dir`, both canonical) for reading, resolved beneath `dir`.
fn open_beneath(dir: &Path, file: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::os::fd::AsRawFd;
    let relative = file.strip_prefix(dir).map_err(std::io::Error::other)?;
    let dir_fd =
        rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir_fd, relative, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        // A kernel before 5.6, or a seccomp filter that refuses openat2: the path has no
        // link left in its last component, and the descriptor must name a file inside.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            let fd = rustix::fs::open(file, flags | OFlags::NOFOLLOW, Mode::empty())?;
            let opened = std::fs::File::from(fd);
            let real = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))?;
            if !lexically_inside(dir, &real) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the file is outside --jwks-dir",
                ));
            }
            Ok(opened)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
thread_local! {
    /// Runs between the checks of a path and its open (a swap an attacker races in).
    static BEFORE_OPEN: std::cell::Cell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file swapped for a link to a file outside the directory, or for a FIFO, between
    /// the checks and the open (by whoever may write the directory) is not read: the open
    /// itself stays beneath the directory and never blocks (review 11, finding 05).
    #[test]
    fn a_file_swapped_after_its_checks_is_not_read() {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path();
        let dir = base.join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(base.join("outside.json"), b"{\"outside\":1}").unwrap();
        let file = dir.join("ok.json");
        let path = file.to_string_lossy().into_owned();
        let swap = {
            let (file, outside) = (file.clone(), base.join("outside.json"));
            move || {
                std::fs::remove_file(&file).unwrap();
                std::os::unix::fs::symlink(&outside, &file).unwrap();
            }
        };
        std::fs::write(&file, b"{\"keys\":[]}").unwrap();
        BEFORE_OPEN.with(|hook| hook.set(Some(Box::new(swap))));
        assert!(read(Some(&dir), &path).is_err(), "a file outside the directory was read");
        // A FIFO swapped in: refused at once (the open used to wait for a writer for ever).
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"{\"keys\":[]}").unwrap();
        let fifo = file.clone();
        BEFORE_OPEN.with(|hook| {
            hook.set(Some(Box::new(move || {
                std::fs::remove_file(&fifo).unwrap();
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &fifo,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap();
            })))
        });
        assert!(read(Some(&dir), &path).is_err());
    }

    #[test]
    fn only_paths_inside_the_directory_are_taken() {
        let dir = Path::new("/srv/jwks");
        assert!(refusal(None, "/srv/jwks/a.json").is_some());
        assert!(refusal(Some(dir), "/srv/jwks/a.json").is_none());
        assert!(refusal(Some(dir), "/srv/jwks/team/a.json").is_none());
        for outside in [
            "/srv/jwks/../../etc/a.json",
            "/srv/jwksother/a.json",
            "/etc/a.json",
            "srv/jwks/a.json",
            "/srv/jwks",
            "/srv/jwks/./../x.json",
        ] {
            assert!(refusal(Some(dir), outside).is_some(), "{outside}");
        }
    }

    #[test]
    fn reads_are_bounded_and_stay_inside() {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path();
        let dir = base.join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok.json"), b"{\"keys\":[]}").unwrap();
        std::fs::write(base.join("outside.json"), b"{\"keys\":[]}").unwrap();
        std::os::unix::fs::symlink(base.join("outside.json"), dir.join("link.json")).unwrap();
        std::fs::write(dir.join("big.json"), vec![b' '; MAX_FILE as usize + 1]).unwrap();
        std::fs::create_dir(dir.join("sub.json")).unwrap();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        assert_eq!(read(Some(&dir), &path("ok.json")).unwrap(), b"{\"keys\":[]}");
        assert!(read(None, &path("ok.json")).is_err());
        assert!(read(Some(&dir), &path("link.json")).is_err());
        assert!(read(Some(&dir), &path("big.json")).is_err());
        assert!(read(Some(&dir), &path("sub.json")).is_err());
        assert!(read(Some(&dir), &path("missing.json")).is_err());
    }
}
