//! The template datadir: `mariadb-install-db` runs once, every server starts from a copy.
//!
//! Installing a datadir takes about a second (2-3 s on a busy machine); copying one takes about
//! 0.1 s. So the first server of a machine installs into
//! `std::env::temp_dir()/drc-testkit-template-<mariadbd version>-<layout>` and every later server,
//! in this or any other test process, copies it.
//!
//! Protocol (safe between concurrent processes):
//! 1. install into a directory with a unique name (`...tmp-<pid>-<nanos>`), then write the marker
//!    file [`MARKER`] into it;
//! 2. `rename` it to the final name; if that fails because another process already renamed its own
//!    copy there, delete ours and use theirs (both are equivalent);
//! 3. a final directory that lacks the marker or a key file (a temp-dir cleaner got at it) is
//!    renamed aside to a unique name, deleted, and installed again; if the race in step 2 hands us
//!    such a directory, that is reported with the command that deletes it.
//!
//! Within one process the result is cached behind a mutex, so concurrent first starts install once.
//! The `<layout>` part of the name changes whenever the install arguments change.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::TestkitError;

/// `innodb_log_file_size` of the template and of every server (equal, so no resize at startup).
pub(crate) const LOG_FILE_SIZE: &str = "48M";

/// Bumped whenever the install arguments change, so old cached templates are not reused.
const LAYOUT: &str = "v1";

/// File written into a template after a complete install; not copied into servers.
const MARKER: &str = ".drc-template-complete";

/// Directories searched after `PATH` (Debian puts `mariadbd` in /usr/sbin, which a non-root
/// `PATH` often lacks).
const FALLBACK_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/local/mysql/bin",
    "/usr/bin",
    "/usr/local/bin",
];

/// The programs and the template every server of this process is made from.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    /// Absolute path of `mariadbd`.
    pub(crate) mariadbd: PathBuf,
    /// The complete template datadir.
    pub(crate) template: PathBuf,
}

static INSTALLATION: Mutex<Option<Installation>> = Mutex::new(None);

/// Returns the installation, creating the template on the first call of the process (and of the
/// machine, if no other process did it before).
pub(crate) fn installation() -> Result<Installation, TestkitError> {
    let mut cached = INSTALLATION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = cached.as_ref() {
        return Ok(found.clone());
    }
    let mariadbd = find_program("mariadbd")?;
    let version = server_version(&mariadbd)?;
    let template = std::env::temp_dir().join(format!(
        "drc-testkit-template-{}-{LAYOUT}",
        sanitize(&version)
    ));
    ensure_template(&template)?;
    let found = Installation { mariadbd, template };
    *cached = Some(found.clone());
    Ok(found)
}

/// Finds `program` in `PATH`, then in [`FALLBACK_DIRS`].
fn find_program(program: &'static str) -> Result<PathBuf, TestkitError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(TestkitError::ProgramNotFound { program })
}

/// `10.11.19-MariaDB-0+deb12u1` from `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...`.
fn server_version(mariadbd: &Path) -> Result<String, TestkitError> {
    let out = Command::new(mariadbd)
        .arg("--version")
        .output()
        .map_err(|e| TestkitError::io(format!("run {} --version", mariadbd.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "Ver")
        .and_then(|_| words.next())
        .map(str::to_owned)
        .ok_or(TestkitError::UnknownVersion {
            program: mariadbd.to_owned(),
            output: text,
        })
}

/// Keeps only characters that are harmless in a file name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Makes sure a complete template exists at `dir` (see the module docs for the protocol).
fn ensure_template(dir: &Path) -> Result<(), TestkitError> {
    if is_complete(dir) {
        return Ok(());
    }
    if dir.exists() {
        tracing::warn!(template = %dir.display(), "template datadir incomplete; reinstalling");
        let aside = unique_sibling(dir, "broken");
        // Another process may be doing the same: whoever renames it deletes it.
        if fs::rename(dir, &aside).is_ok() {
            let _ = fs::remove_dir_all(&aside);
        }
    }
    let install_db = find_program("mariadb-install-db")?;
    let staging = unique_sibling(dir, "tmp");
    let installed = install(&install_db, &staging);
    if let Err(e) = installed {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    match fs::rename(&staging, dir) {
        Ok(()) => Ok(()),
        Err(e) if dir.exists() => {
            // Lost the race against another process: theirs is as good as ours.
            tracing::debug!(error = %e, template = %dir.display(), "template created concurrently");
            let _ = fs::remove_dir_all(&staging);
            if is_complete(dir) {
                Ok(())
            } else {
                Err(TestkitError::BrokenTemplate {
                    dir: dir.to_owned(),
                })
            }
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(TestkitError::io(
                format!("rename {} to {}", staging.display(), dir.display()),
                e,
            ))
        }
    }
}

/// Whether `dir` holds a template made by [`install`] whose key files are all still there.
fn is_complete(dir: &Path) -> bool {
    [MARKER, "ibdata1", "ib_logfile0", "mysql/global_priv.MAD"]
        .iter()
        .all(|file| dir.join(file).is_file())
}

/// `DIR.<what>-<pid>-<nanos>`: a name no other process uses.
fn unique_sibling(dir: &Path, what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".{what}-{}-{nanos}", std::process::id()));
    PathBuf::from(name)
}

/// Runs `mariadb-install-db` into `datadir` and marks it complete.
fn install(install_db: &Path, datadir: &Path) -> Result<(), TestkitError> {
    let started = std::time::Instant::now();
    let out = Command::new(install_db)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--innodb-log-file-size={LOG_FILE_SIZE}"))
        .output()
        .map_err(|e| TestkitError::io(format!("run {}", install_db.display()), e))?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(TestkitError::InstallDb {
            dir: datadir.to_owned(),
            status: out.status.to_string(),
            output: last_lines(&output, 30),
        });
    }
    fs::write(datadir.join(MARKER), b"complete\n")
        .map_err(|e| TestkitError::io(format!("write marker in {}", datadir.display()), e))?;
    tracing::info!(
        template = %datadir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "installed MariaDB template datadir"
    );
    Ok(())
}

/// Copies the template `from` into a new directory `to` (recursively, without the marker).
pub(crate) fn copy_template(from: &Path, to: &Path) -> Result<(), TestkitError> {
    copy_dir(from, to).map_err(|e| {
        TestkitError::io(
            format!("copy template {} to {}", from.display(), to.display()),
            e,
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == OsStr::new(MARKER) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_version_readable() {
        assert_eq!(
            sanitize("10.11.19-MariaDB-0+deb12u1"),
            "10.11.19-MariaDB-0_deb12u1"
        );
    }

    #[test]
    fn last_lines_takes_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn copy_dir_copies_nested_files_but_not_the_marker() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir(src.path().join("mysql")).expect("mkdir");
        fs::write(src.path().join("mysql/user.MAD"), b"x").expect("write");
        fs::write(src.path().join("ibdata1"), b"y").expect("write");
        fs::write(src.path().join(MARKER), b"complete").expect("write");
        let dst = tempfile::tempdir().expect("tempdir");
        let to = dst.path().join("data");
        copy_dir(src.path(), &to).expect("copy");
        assert_eq!(fs::read(to.join("mysql/user.MAD")).expect("read"), b"x");
        assert_eq!(fs::read(to.join("ibdata1")).expect("read"), b"y");
        assert!(!to.join(MARKER).exists());
    }
}
