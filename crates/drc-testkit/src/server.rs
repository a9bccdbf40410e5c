//! [`MariaDb`]: one throwaway server, from start to deletion.
//!
//! Life cycle:
//! 1. `start` copies the template datadir into a fresh directory `DIR` (`DIR/data` is the datadir;
//!    `DIR/error.log`, `DIR/sock`, `DIR/mariadbd.pid` sit beside it), picks a port, and hands `DIR`
//!    to a supervisor (see `supervisor.rs`) which from then on owns its deletion;
//! 2. the server is *ready* when a TCP connection to its port receives a MySQL handshake packet
//!    (5th byte = protocol version 10) while the `mariadbd` process is alive; polled every 50 ms,
//!    60 s at most;
//! 3. if `mariadbd` exits because the port was taken meanwhile ("Address already in use" in its
//!    log), `start` retries with a fresh directory and another port, 5 times at most;
//!    `start_again` must keep its port, so it retries the same port for up to 30 s;
//! 4. `stop`/`kill`/`restart`/`start_again` keep `DIR`; dropping the [`MariaDb`] kills the server
//!    and deletes `DIR` before `drop` returns.
//!
//! All of it is synchronous (std threads and processes, no async runtime), so a server may outlive
//! any tokio runtime, e.g. in a `static`.

use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::TestkitError;
use crate::options::{allocate_server_id, ServerOptions};
use crate::supervisor::{process_alive, Supervisor};
use crate::template::{self, last_lines, Installation};

/// How long a server may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the server is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);
/// How many ports `start` tries.
const PORT_ATTEMPTS: u32 = 5;
/// How long `start_again` keeps trying to get its port back.
const SAME_PORT_DEADLINE: Duration = Duration::from_secs(30);
/// How many error-log lines go into error messages.
const LOG_TAIL_LINES: usize = 40;

/// A throwaway MariaDB server listening on `127.0.0.1`, user `root`, empty password.
///
/// Dropping it kills the server and deletes its directory; if the process dies without dropping
/// it (panic=abort, `SIGKILL`, a `static`), the supervisor does the same as soon as the process is
/// gone.
pub struct MariaDb {
    dir: PathBuf,
    datadir: PathBuf,
    port: u16,
    server_id: u32,
    gtid_domain_id: u32,
    options: ServerOptions,
    /// The `mariadbd` the supervisor started and has not halted yet (it may have exited).
    pid: Option<u32>,
    supervisor: Supervisor,
}

/// How one launch attempt ended, if not ready.
enum LaunchFailure {
    /// `mariadbd` exited because its port was taken; the log tail says so.
    PortInUse(String),
    /// Anything else: give up.
    Fatal(TestkitError),
}

impl MariaDb {
    /// Starts a new server and waits until it accepts connections.
    pub fn start(options: ServerOptions) -> Result<Self, TestkitError> {
        let began = Instant::now();
        let install = template::installation()?;
        let server_id = options
            .explicit_server_id()
            .unwrap_or_else(allocate_server_id);
        let mut log_tail = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let port = crate::port::pick_free_port()?;
            let mut server = Self::prepare(&install, &options, server_id, port)?;
            match server.launch() {
                Ok(()) => {
                    tracing::info!(
                        port,
                        server_id,
                        dir = %server.dir.display(),
                        elapsed_ms = began.elapsed().as_millis() as u64,
                        "throwaway MariaDB ready"
                    );
                    return Ok(server);
                }
                Err(LaunchFailure::PortInUse(tail)) => {
                    tracing::debug!(
                        port,
                        attempt,
                        "port taken before mariadbd bound it; retrying"
                    );
                    log_tail = tail;
                }
                Err(LaunchFailure::Fatal(e)) => return Err(e),
            }
        }
        Err(TestkitError::NoFreePort {
            attempts: PORT_ATTEMPTS,
            log_tail,
        })
    }

    /// Creates the directory from the template and spawns the supervisor (server not started).
    fn prepare(
        install: &Installation,
        options: &ServerOptions,
        server_id: u32,
        port: u16,
    ) -> Result<Self, TestkitError> {
        let temp = tempfile::Builder::new()
            .prefix("drc-mariadb-")
            .tempdir()
            .map_err(|e| TestkitError::io("create a temporary directory for mariadbd", e))?;
        let datadir = temp.path().join("data");
        template::copy_template(&install.template, &datadir)?;
        // From here on the supervisor, not `TempDir`, deletes the directory.
        let dir = temp.keep();
        let datadir = dir.join("data");
        let args = options.command_line(&dir, &datadir, port, server_id);
        let supervisor = match Supervisor::spawn(&dir, &install.mariadbd, &args) {
            Ok(supervisor) => supervisor,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Self {
            dir,
            datadir,
            port,
            server_id,
            gtid_domain_id: options.domain_for(server_id),
            options: options.clone(),
            pid: None,
            supervisor,
        })
    }

    /// Starts `mariadbd` through the supervisor and waits until it greets clients.
    fn launch(&mut self) -> Result<(), LaunchFailure> {
        let log_offset = std::fs::metadata(self.error_log())
            .map(|m| m.len())
            .unwrap_or(0);
        let pid = self.supervisor.start().map_err(LaunchFailure::Fatal)?;
        self.pid = Some(pid);
        let began = Instant::now();
        loop {
            if !process_alive(pid) {
                let new_log = self.error_log_since(log_offset);
                let log_tail = last_lines(&new_log, LOG_TAIL_LINES);
                // Reap it now so the next attempt starts clean.
                let _ = self.halt(false);
                if new_log.contains("Address already in use")
                    || new_log.contains("Bind on TCP/IP port")
                {
                    return Err(LaunchFailure::PortInUse(log_tail));
                }
                return Err(LaunchFailure::Fatal(TestkitError::Exited {
                    port: self.port,
                    datadir: self.datadir.clone(),
                    log_tail,
                }));
            }
            // A greeting from someone else on our port is ruled out by the liveness check above
            // on the next round: our server then exits with "Address already in use".
            if greets(self.port) && process_alive(pid) {
                return Ok(());
            }
            if began.elapsed() > STARTUP_DEADLINE {
                let log_tail = self.error_log_tail(LOG_TAIL_LINES);
                let _ = self.halt(false);
                return Err(LaunchFailure::Fatal(TestkitError::StartTimeout {
                    port: self.port,
                    datadir: self.datadir.clone(),
                    waited: STARTUP_DEADLINE,
                    log_tail,
                }));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops (graceful) or kills the server, if one was started; data is kept.
    fn halt(&mut self, graceful: bool) -> Result<(), TestkitError> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        self.supervisor
            .halt(graceful, Some(pid), SHUTDOWN_DEADLINE)?;
        self.pid = None;
        Ok(())
    }

    /// The TCP port on `127.0.0.1`; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `@@server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's `@@gtid_domain_id`.
    pub fn gtid_domain_id(&self) -> u32 {
        self.gtid_domain_id
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// `mysql://root@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// `mysql://root@127.0.0.1:PORT/DB`.
    pub fn url_for(&self, db: &str) -> String {
        format!("{}/{db}", self.url())
    }

    /// The datadir (`DIR/data`).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The server's directory `DIR`: datadir, `error.log`, socket, pid file. Deleted on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the running `mariadbd`, if it is running.
    pub fn mariadbd_pid(&self) -> Option<u32> {
        self.pid.filter(|&pid| process_alive(pid))
    }

    /// The pid of the supervisor shell that owns the server and its directory.
    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor.pid()
    }

    /// Graceful shutdown (`SIGTERM`, wait); data kept, port reserved for [`MariaDb::start_again`].
    /// Does nothing if the server is not running.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        self.halt(true)
    }

    /// Crash: `SIGKILL` to `mariadbd` and wait; data kept (what was committed survives with
    /// `innodb_flush_log_at_trx_commit` 1 or 2, since the OS keeps the written log).
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        self.halt(false)
    }

    /// Starts the stopped or killed server again with the same data, options and port, and waits
    /// until it accepts connections (after a kill, that includes InnoDB crash recovery).
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        if self.is_running() {
            return Err(TestkitError::AlreadyRunning { port: self.port });
        }
        // Reap a server that exited on its own.
        self.halt(false)?;
        let began = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(LaunchFailure::Fatal(e)) => return Err(e),
                Err(LaunchFailure::PortInUse(log_tail)) => {
                    if began.elapsed() > SAME_PORT_DEADLINE {
                        return Err(TestkitError::Exited {
                            port: self.port,
                            datadir: self.datadir.clone(),
                            log_tail,
                        });
                    }
                    tracing::debug!(port = self.port, "port busy on restart; retrying");
                    std::thread::sleep(POLL * 4);
                }
            }
        }
    }

    /// [`MariaDb::stop`], then [`MariaDb::start_again`].
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start_again()
    }

    /// Whether `mariadbd` is running (it may have crashed on its own).
    pub fn is_running(&self) -> bool {
        self.mariadbd_pid().is_some()
    }

    /// The last `lines` lines of the server's `error.log` (empty if there is none).
    pub fn error_log_tail(&self, lines: usize) -> String {
        last_lines(&self.error_log_since(0), lines)
    }

    /// Debugging aid: after this, dropping the server shuts it down gracefully and leaves its
    /// directory (see [`MariaDb::dir`]) in place instead of deleting it.
    pub fn keep_on_drop(&self) -> Result<(), TestkitError> {
        let keep = self.dir.join(".keep");
        std::fs::write(&keep, b"")
            .map_err(|e| TestkitError::io(format!("create {}", keep.display()), e))
    }

    fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The error log from byte `offset` on (lossy UTF-8; at most the last 256 KiB).
    fn error_log_since(&self, offset: u64) -> String {
        const MAX: u64 = 256 * 1024;
        let Ok(mut file) = std::fs::File::open(self.error_log()) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let from = offset.max(len.saturating_sub(MAX));
        let mut bytes = Vec::new();
        let read = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(from))
            .and_then(|_| file.read_to_end(&mut bytes));
        if read.is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDb")
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field("gtid_domain_id", &self.gtid_domain_id)
            .field("dir", &self.dir)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Whether a server on `127.0.0.1:port` sends a MySQL handshake (protocol version 10).
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    // 3 bytes payload length, 1 byte sequence id, then the protocol version.
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}
