//! Stamps `drc --version` with the git revision it was built from (`0.1.0 (abc1234)`), or
//! `unknown` outside a git checkout (e.g. a source tarball).

use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!(
        "cargo:rustc-env=DRC_VERSION={} ({rev})",
        env!("CARGO_PKG_VERSION")
    );
    // Rebuild the stamp when HEAD moves (a commit or a checkout); the paths are relative to this
    // crate and are ignored when they do not exist.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
