//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the folders, but cargo only notices new files if
//! told to watch them. Also records the git commit the binary is built from (`GIT_COMMIT`, or `git
//! rev-parse` when the build script runs), for the release that metrics and error tracking report. Release
//! images pass `GIT_COMMIT`, so the value is exact there.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    let commit = std::env::var("GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    });
    if let Some(commit) = commit {
        println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    }
}
