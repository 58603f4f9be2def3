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
pub fn read(dir: Option<&Path>, path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let refused = |why: &str| Error::new(ErrorKind::PermissionDenied, why.to_string());
    let dir = dir.ok_or_else(|| refused("no --jwks-dir: the coffer:jwks-file tag is off"))?;
    let dir: PathBuf = dir.canonicalize()?;
    let file = Path::new(path).canonicalize()?;
    if !lexically_inside(&dir, &file) {
        return Err(refused("the file is outside --jwks-dir"));
    }
    // Checked before opening: opening a FIFO blocks until a writer comes.
    if !std::fs::metadata(&file)?.is_file() {
        return Err(refused("not a regular file"));
    }
    let opened = std::fs::File::open(&file)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
