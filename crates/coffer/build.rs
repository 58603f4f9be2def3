//! Records the git commit the binary is built from, for `coffer --version` and the
//! `coffer_build_info` metric. Outside a git checkout (a source tarball, a vendored copy)
//! or without git installed, the commit is "unknown": the build never fails for it.

use std::process::Command;

fn main() {
    // A build without the git history (a container build context, a tarball) may name it.
    println!("cargo:rerun-if-env-changed=COFFER_GIT_COMMIT");
    let given = std::env::var("COFFER_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let commit = given.or_else(git_commit).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=COFFER_GIT_COMMIT={commit}");
    watch_git_head();
    println!("cargo:rerun-if-changed=build.rs");
}

/// `git rev-parse --short=12 HEAD`, if this is a git checkout and git is installed.
fn git_commit() -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn watch_git_head() {
    // Rebuild when the checked-out commit moves (HEAD, or the branch it points to).
    if let Some(git_dir) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
    {
        let git_dir = std::path::PathBuf::from(git_dir.trim());
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD"))
            && let Some(branch) = head.trim().strip_prefix("ref: ")
        {
            // In a worktree the branch lives in the common directory.
            let common = Command::new("git")
                .args(["rev-parse", "--git-common-dir"])
                .output()
                .ok()
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| std::path::PathBuf::from(s.trim()))
                .unwrap_or(git_dir.clone());
            println!("cargo:rerun-if-changed={}", common.join(branch).display());
            // Watched only if present: a missing file would rerun this script on every build.
            let packed = common.join("packed-refs");
            if packed.exists() {
                println!("cargo:rerun-if-changed={}", packed.display());
            }
        }
    }
}
