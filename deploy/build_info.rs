// Build information printed by `--version`: one build script shared by the
// binaries (each crate's build.rs is `include!` of this file).
//
// Sets TOLLGATE_LONG_VERSION to
//   "<crate version> (commit <12 hex digits>, profile <cargo profile>, <target>)".
// The commit comes from TOLLGATE_GIT_COMMIT when set (container builds, where
// .git is not in the build context), else from `git rev-parse`; without
// either it is "unknown" and the build still succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOLLGATE_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Naming any file turns off cargo's default (rerun on any change in the
    // package), so name the scripts themselves too.
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(shared) = manifest_dir
        .ancestors()
        .map(|d| d.join("deploy").join("build_info.rs"))
        .find(|p| p.is_file())
    {
        println!("cargo:rerun-if-changed={}", shared.display());
    }
    let commit = std::env::var("TOLLGATE_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().chars().take(12).collect::<String>())
        .filter(|c| !c.is_empty() && c != "unknown")
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!(
        "cargo:rustc-env=TOLLGATE_LONG_VERSION={version} (commit {commit}, profile {}, {target})",
        profile_name()
    );
}

/// The cargo profile's directory name: OUT_DIR is
/// `<target dir>/[<triple>/]<profile>/build/<package>-<hash>/out`.
fn profile_name() -> String {
    std::env::var("OUT_DIR")
        .ok()
        .and_then(|out| {
            Path::new(&out)
                .ancestors()
                .nth(3)
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// HEAD's commit, and rerun-if-changed on the files that move when it does
/// (HEAD, the branch's ref, packed-refs; worktrees included).
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}
