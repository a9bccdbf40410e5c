//! The example files in config/ load as they are.

use std::path::PathBuf;

#[test]
fn example_configs_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let env = |k: &str| k.ends_with("_PASSWORD").then(|| "pw".to_string());
    for name in ["minimal.toml", "full.toml"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("example exists");
        // full.toml names a password file that exists only in production; point it elsewhere.
        let tmp = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(tmp.path(), "pw\n").expect("write");
        let text = text.replace("/run/secrets/drc-bj", &tmp.path().display().to_string());
        // ... and a Raft secret file.
        let key = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(key.path(), "0123456789abcdef0123456789abcdef\n").expect("write");
        let text = text.replace("/etc/drc/raft-bj.key", &key.path().display().to_string());
        let c = drc_config::Config::parse(&text, &env)
            .unwrap_or_else(|e| panic!("{name} is invalid: {e}"));
        assert_eq!(c.centers.len(), 3, "{name}");
    }
}
