//! What a throwaway server looks like: [`ServerOptions`] and the command line built from it.
//!
//! Defaults are what `drc` needs from a production server (binary log on, `ROW` format, `FULL` row
//! image, `FULL` row metadata, 256 MiB packets) plus settings that make a server cheap to start and
//! fast to write to (small buffer pool, no doublewrite, no fsync per commit). Each replication
//! setting can be overridden so tests can build servers that `drc`'s preflight must refuse.
//!
//! Identity: unless set, every server of a process gets its own `server_id` from a process-wide
//! counter (starting at [`FIRST_AUTO_SERVER_ID`], so small explicit ids such as 1, 2, 3 never collide
//! with allocated ones), and `gtid_domain_id` equals `server_id`.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The first `server_id` handed out to servers whose options do not set one.
pub const FIRST_AUTO_SERVER_ID: u32 = 101;

static NEXT_SERVER_ID: AtomicU32 = AtomicU32::new(FIRST_AUTO_SERVER_ID);

/// Returns a `server_id` no other server of this process got from the counter.
pub(crate) fn allocate_server_id() -> u32 {
    NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed)
}

/// `binlog_format`: how changes are written to the binary log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinlogFormat {
    /// Row events (what `drc` requires).
    #[default]
    Row,
    /// SQL statements.
    Statement,
    /// Statements, switching to rows for unsafe ones.
    Mixed,
}

/// `binlog_row_image`: which columns a row event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinlogRowImage {
    /// All columns before and after (what `drc` requires).
    #[default]
    Full,
    /// Only the key before, only changed columns after.
    Minimal,
    /// All columns except unchanged BLOB/TEXT.
    Noblob,
}

/// `binlog_row_metadata`: how much table metadata a table-map event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinlogRowMetadata {
    /// Column names, charsets, keys... (what `drc` requires).
    #[default]
    Full,
    /// Signedness, charsets and geometry types only.
    Minimal,
    /// Nothing beyond types.
    NoLog,
}

impl fmt::Display for BinlogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Row => "ROW",
            Self::Statement => "STATEMENT",
            Self::Mixed => "MIXED",
        })
    }
}

impl fmt::Display for BinlogRowImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "FULL",
            Self::Minimal => "MINIMAL",
            Self::Noblob => "NOBLOB",
        })
    }
}

impl fmt::Display for BinlogRowMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "FULL",
            Self::Minimal => "MINIMAL",
            Self::NoLog => "NO_LOG",
        })
    }
}

/// Settings of one throwaway server. Start from [`ServerOptions::default`] and chain setters.
///
/// ```
/// use drc_testkit::{BinlogFormat, ServerOptions};
/// let opts = ServerOptions::default()
///     .binlog_format(BinlogFormat::Statement)
///     .arg("--gtid-strict-mode=ON");
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    server_id: Option<u32>,
    gtid_domain_id: Option<u32>,
    binlog: bool,
    binlog_format: BinlogFormat,
    binlog_row_image: BinlogRowImage,
    binlog_row_metadata: BinlogRowMetadata,
    log_bin_compress: bool,
    max_allowed_packet: u64,
    innodb_flush_log_at_trx_commit: u8,
    sync_binlog: u32,
    max_connections: u32,
    extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            server_id: None,
            gtid_domain_id: None,
            binlog: true,
            binlog_format: BinlogFormat::Row,
            binlog_row_image: BinlogRowImage::Full,
            binlog_row_metadata: BinlogRowMetadata::Full,
            log_bin_compress: false,
            max_allowed_packet: 256 * 1024 * 1024,
            innodb_flush_log_at_trx_commit: 2,
            sync_binlog: 0,
            max_connections: 500,
            extra_args: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// Same as [`ServerOptions::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `server_id` (default: allocated, distinct within the process).
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Sets `gtid_domain_id` (default: equal to the server id).
    pub fn gtid_domain_id(mut self, id: u32) -> Self {
        self.gtid_domain_id = Some(id);
        self
    }

    /// Turns the binary log on (default) or off (`--skip-log-bin`).
    pub fn binlog(mut self, on: bool) -> Self {
        self.binlog = on;
        self
    }

    /// Sets `binlog_format` (default `ROW`).
    pub fn binlog_format(mut self, format: BinlogFormat) -> Self {
        self.binlog_format = format;
        self
    }

    /// Sets `binlog_row_image` (default `FULL`).
    pub fn binlog_row_image(mut self, image: BinlogRowImage) -> Self {
        self.binlog_row_image = image;
        self
    }

    /// Sets `binlog_row_metadata` (default `FULL`).
    pub fn binlog_row_metadata(mut self, metadata: BinlogRowMetadata) -> Self {
        self.binlog_row_metadata = metadata;
        self
    }

    /// Sets `log_bin_compress` (default off; MariaDB then writes compressed events).
    pub fn log_bin_compress(mut self, on: bool) -> Self {
        self.log_bin_compress = on;
        self
    }

    /// Sets `max_allowed_packet` in bytes (default 256 MiB; the server rounds to 1 KiB, max 1 GiB).
    pub fn max_allowed_packet(mut self, bytes: u64) -> Self {
        self.max_allowed_packet = bytes;
        self
    }

    /// Sets `innodb_flush_log_at_trx_commit` (default 2: survives a server crash, not an OS crash).
    pub fn innodb_flush_log_at_trx_commit(mut self, value: u8) -> Self {
        self.innodb_flush_log_at_trx_commit = value;
        self
    }

    /// Sets `sync_binlog` (default 0: the OS decides when the binary log reaches the disk).
    pub fn sync_binlog(mut self, value: u32) -> Self {
        self.sync_binlog = value;
        self
    }

    /// Durable mode for benchmarks: `innodb_flush_log_at_trx_commit=1` and `sync_binlog=1`.
    pub fn durable(self) -> Self {
        self.innodb_flush_log_at_trx_commit(1).sync_binlog(1)
    }

    /// Sets `max_connections` (default 500, above the server's 151, since tests open many pools).
    pub fn max_connections(mut self, value: u32) -> Self {
        self.max_connections = value;
        self
    }

    /// Appends one raw `mariadbd` argument, e.g. `"--gtid-strict-mode=ON"`; it comes last and so
    /// overrides anything the kit sets.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Appends several raw `mariadbd` arguments (see [`ServerOptions::arg`]).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The explicitly set server id, if any.
    pub(crate) fn explicit_server_id(&self) -> Option<u32> {
        self.server_id
    }

    /// The GTID domain id for a server whose id is `server_id`.
    pub(crate) fn domain_for(&self, server_id: u32) -> u32 {
        self.gtid_domain_id.unwrap_or(server_id)
    }

    /// The `mariadbd` arguments (without the program) for a server living in `dir`, with its
    /// datadir at `datadir`, listening on `port`.
    ///
    /// `--no-defaults` comes first (the server requires that); extra arguments come last.
    pub(crate) fn command_line(
        &self,
        dir: &Path,
        datadir: &Path,
        port: u16,
        server_id: u32,
    ) -> Vec<String> {
        let d = dir.display();
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", datadir.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--socket={d}/sock"),
            format!("--pid-file={d}/mariadbd.pid"),
            format!("--log-error={d}/error.log"),
            // Internal temporary tables in the server's own directory: a shared /tmp can be
            // cleaned under a running server by anything else on the machine.
            format!("--tmpdir={d}"),
            "--user=root".to_owned(),
            format!("--server-id={server_id}"),
            format!("--gtid-domain-id={}", self.domain_for(server_id)),
        ];
        if self.binlog {
            args.push(format!("--log-bin={}/binlog", datadir.display()));
        } else {
            args.push("--skip-log-bin".to_owned());
        }
        args.extend([
            format!("--binlog-format={}", self.binlog_format),
            format!("--binlog-row-image={}", self.binlog_row_image),
            format!("--binlog-row-metadata={}", self.binlog_row_metadata),
            format!(
                "--log-bin-compress={}",
                if self.log_bin_compress { "ON" } else { "OFF" }
            ),
            format!("--max-allowed-packet={}", self.max_allowed_packet),
            format!(
                "--innodb-flush-log-at-trx-commit={}",
                self.innodb_flush_log_at_trx_commit
            ),
            format!("--sync-binlog={}", self.sync_binlog),
            format!("--max-connections={}", self.max_connections),
            "--innodb-buffer-pool-size=64M".to_owned(),
            format!("--innodb-log-file-size={}", crate::template::LOG_FILE_SIZE),
            "--innodb-doublewrite=0".to_owned(),
            "--skip-name-resolve".to_owned(),
            "--performance-schema=OFF".to_owned(),
            "--character-set-server=utf8mb4".to_owned(),
            "--collation-server=utf8mb4_general_ci".to_owned(),
        ]);
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_a_row_full_full_server() {
        let args =
            ServerOptions::default().command_line(Path::new("/t"), Path::new("/t/data"), 4000, 7);
        assert_eq!(args[0], "--no-defaults");
        for want in [
            "--port=4000",
            "--server-id=7",
            "--gtid-domain-id=7",
            "--log-bin=/t/data/binlog",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--max-allowed-packet=268435456",
            "--socket=/t/sock",
            "--tmpdir=/t",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
    }

    #[test]
    fn overrides_and_extra_args_come_through() {
        let args = ServerOptions::default()
            .binlog(false)
            .binlog_format(BinlogFormat::Statement)
            .binlog_row_image(BinlogRowImage::Minimal)
            .binlog_row_metadata(BinlogRowMetadata::NoLog)
            .log_bin_compress(true)
            .gtid_domain_id(42)
            .durable()
            .arg("--gtid-strict-mode=ON")
            .command_line(Path::new("/t"), Path::new("/t/data"), 1, 3);
        for want in [
            "--skip-log-bin",
            "--binlog-format=STATEMENT",
            "--binlog-row-image=MINIMAL",
            "--binlog-row-metadata=NO_LOG",
            "--log-bin-compress=ON",
            "--gtid-domain-id=42",
            "--innodb-flush-log-at-trx-commit=1",
            "--sync-binlog=1",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        assert_eq!(
            args.last().map(String::as_str),
            Some("--gtid-strict-mode=ON")
        );
    }

    #[test]
    fn allocated_ids_are_distinct() {
        let a = allocate_server_id();
        let b = allocate_server_id();
        assert_ne!(a, b);
        assert!(a >= FIRST_AUTO_SERVER_ID);
    }
}
