//! The binary's own surface: `--version` names the git revision, shell completions and the man
//! page are generated from the same flags as `--help`, and a bad value is a clear error.

use std::process::Command;

fn drc(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(args)
        .output()
        .expect("drc runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn version_completions_and_man_page() {
    let (code, out, _) = drc(&["--version"]);
    assert_eq!(code, Some(0));
    let v = out.trim();
    assert!(
        v.starts_with(&format!("drc {} (", env!("CARGO_PKG_VERSION"))) && v.ends_with(')'),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = drc(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for sub in ["bootstrap", "link", "status"] {
            assert!(out.contains(sub), "{shell} completion offers {sub}");
        }
    }
    let (code, out, _) = drc(&["man"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(".TH drc 1"), "{out}");
    assert!(
        out.contains("bootstrap"),
        "the man page lists the subcommands"
    );
    let (code, _, err) = drc(&["completions", "cmd.exe"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid value 'cmd.exe'"), "{err}");
}
