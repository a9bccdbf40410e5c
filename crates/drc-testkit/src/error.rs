//! The one error type of the test kit.
//!
//! Every message says what went wrong *and* what to do about it, because the reader is a developer
//! whose test just failed. Errors that concern a started server carry the tail of its `error.log`,
//! which is where MariaDB explains itself.
//!
//! There is no transient/permanent split here: the kit already retries the transient cases
//! (a free port that was taken before the server bound it, a restart whose port is briefly busy)
//! and reports only what is left.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a throwaway MariaDB server could not be started, stopped or restarted.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A MariaDB program was found neither in `PATH` nor in the usual system directories.
    #[error(
        "{program} not found in PATH (nor in /usr/sbin, /usr/local/sbin, /usr/local/mysql/bin): \
         install mariadb-server (apt-get install -y mariadb-server)"
    )]
    ProgramNotFound {
        /// The program that is missing, e.g. `mariadbd`.
        program: &'static str,
    },

    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the kit was doing, e.g. "copy template datadir to /tmp/x".
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `mariadb-install-db` failed while creating the template datadir.
    #[error(
        "mariadb-install-db failed ({status}) while creating the template datadir {dir}; \
         check that mariadb-server is installed completely. Output:\n{output}"
    )]
    InstallDb {
        /// Where the template was being installed.
        dir: PathBuf,
        /// Exit status as printed by the OS.
        status: String,
        /// Combined stdout and stderr of the installer (tail).
        output: String,
    },

    /// The cached template datadir is incomplete and could not be replaced.
    #[error(
        "the cached template datadir {dir} is incomplete; \
         delete it (rm -rf {dir}) and run the tests again"
    )]
    BrokenTemplate {
        /// The cached template directory.
        dir: PathBuf,
    },

    /// `mariadbd --version` printed something the kit could not parse.
    #[error(
        "could not read the version from `{program} --version` (got {output:?}); is it MariaDB?"
    )]
    UnknownVersion {
        /// The server program that was asked.
        program: PathBuf,
        /// What it printed.
        output: String,
    },

    /// The server exited before it accepted connections.
    #[error(
        "mariadbd (port {port}, datadir {datadir}) exited during startup; \
         see its error.log below:\n{log_tail}"
    )]
    Exited {
        /// The port it was told to listen on.
        port: u16,
        /// Its datadir.
        datadir: PathBuf,
        /// The last lines of its error log.
        log_tail: String,
    },

    /// The server did not greet a client within the startup deadline.
    #[error(
        "mariadbd (port {port}, datadir {datadir}) did not accept connections within {waited:?}; \
         the machine may be overloaded or the server stuck; error.log tail:\n{log_tail}"
    )]
    StartTimeout {
        /// The port it was told to listen on.
        port: u16,
        /// Its datadir.
        datadir: PathBuf,
        /// How long the kit waited.
        waited: Duration,
        /// The last lines of its error log.
        log_tail: String,
    },

    /// Every port the kit tried was taken by someone else before the server could bind it.
    #[error(
        "mariadbd could not bind a free port after {attempts} attempts (another process keeps \
         taking them, or 127.0.0.1 is not usable); last error.log tail:\n{log_tail}"
    )]
    NoFreePort {
        /// How many ports were tried.
        attempts: u32,
        /// The error log tail of the last attempt.
        log_tail: String,
    },

    /// The small shell supervisor that owns the server process misbehaved.
    #[error("the mariadbd supervisor (sh) {what}; see {dir}/error.log and {dir}/mariadbd.out")]
    Supervisor {
        /// What went wrong, e.g. "exited unexpectedly".
        what: String,
        /// The server's top-level directory.
        dir: PathBuf,
    },

    /// `start_again` was called while the server is still running.
    #[error(
        "mariadbd on port {port} is still running: call stop() or kill() before start_again()"
    )]
    AlreadyRunning {
        /// The server's port.
        port: u16,
    },
}

impl TestkitError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
