//! `drc tail`: one JSON object per row change, from a live server or a binlog file.
//!
//! Each line: `position` (where to start again to see this row's transaction: the position
//! after the previous transaction), `gtid` (the transaction's GTID or null), `server_id` (origin
//! in the event header), `database`, `table`, `kind` (insert/update/delete), `before`, `after`
//! (objects keyed by column name; null when the kind has no such image). Value encoding is
//! described in `drc_core::value` and docs/tail.md.

use std::io::Write;
use std::process::ExitCode;

use drc_core::change::{SourceEvent, TxnGtid};
use drc_core::position::{FilePos, Position};
use drc_source::{read_file, Source, SourceConfig, StartFrom};
use serde_json::json;

use crate::cli::TailArgs;

type BoxError = Box<dyn std::error::Error>;

struct Printer<W: Write> {
    out: W,
    position: Position,
    gtid: Option<TxnGtid>,
    server_id: u32,
    printed: u64,
    limit: Option<u64>,
    ddl: bool,
}

impl<W: Write> Printer<W> {
    /// Prints what `ev` shows; returns false once the limit is reached.
    fn event(&mut self, ev: &SourceEvent) -> std::io::Result<bool> {
        match ev {
            SourceEvent::Begin(b) => {
                self.gtid = b.gtid.clone();
                self.server_id = b.server_id;
            }
            SourceEvent::Rows(rows) => {
                for r in rows {
                    if self.limit.is_some_and(|l| self.printed >= l) {
                        return Ok(false);
                    }
                    let line = json!({
                        "position": self.position.to_string(),
                        "gtid": self.gtid.as_ref().map(|g| g.to_string()),
                        "server_id": self.server_id,
                        "database": &*r.table.database,
                        "table": &*r.table.table,
                        "kind": r.kind.as_str(),
                        "before": r.before.as_ref().map(|i| i.to_json(&r.table)),
                        "after": r.after.as_ref().map(|i| i.to_json(&r.table)),
                    });
                    serde_json::to_writer(&mut self.out, &line)?;
                    self.out.write_all(b"\n")?;
                    self.printed += 1;
                }
            }
            SourceEvent::Commit(c) => {
                self.position = c.position.clone();
                self.gtid = None;
            }
            SourceEvent::Ddl(d) => {
                if self.ddl {
                    let line = json!({
                        "position": self.position.to_string(),
                        "gtid": d.gtid.as_ref().map(|g| g.to_string()),
                        "server_id": d.server_id,
                        "database": d.database,
                        "kind": "ddl",
                        "ddl_kind": format!("{:?}", d.ddl.kind),
                        "statement": d.statement,
                    });
                    serde_json::to_writer(&mut self.out, &line)?;
                    self.out.write_all(b"\n")?;
                }
                self.position = d.position.clone();
            }
        }
        Ok(self.limit.is_none_or(|l| self.printed < l))
    }
}

fn broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Runs `drc tail`.
pub async fn run(args: TailArgs) -> Result<ExitCode, BoxError> {
    let stdout = std::io::stdout();
    let mut printer = Printer {
        out: std::io::BufWriter::new(stdout.lock()),
        position: Position::File(FilePos {
            file: String::new(),
            offset: 4,
        }),
        gtid: None,
        server_id: 0,
        printed: 0,
        limit: args.limit,
        ddl: args.ddl,
    };
    if args.limit == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.file {
        let src = read_file(path)?;
        printer.position = Position::File(FilePos {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            offset: 4,
        });
        for ev in src {
            match printer.event(&ev?) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e.into()),
            }
        }
        match printer.out.flush() {
            Err(e) if !broken_pipe(&e) => return Err(e.into()),
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
    let Some(url) = args.mysql else {
        return Err("give --mysql URL or --file PATH".into());
    };
    let url = with_env_password(url.expose().to_string());
    let replica_id = args
        .replica_server_id
        .unwrap_or(900_000_000 + std::process::id() % 1_000_000);
    let mut cfg = SourceConfig::new(url, replica_id);
    if let Some(from) = &args.from {
        let pos: Position = from.parse().map_err(|e| format!("--from {from:?}: {e}"))?;
        cfg.start = StartFrom::Position(pos);
    }
    let mut src = Source::connect(cfg).await?;
    printer.position = src.position().clone();
    loop {
        let ev = tokio::select! {
            ev = src.next() => ev?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let more = match printer
            .event(&ev)
            .and_then(|m| printer.out.flush().map(|_| m))
        {
            Ok(m) => m,
            Err(e) if broken_pipe(&e) => break,
            Err(e) => return Err(e.into()),
        };
        if !more {
            break;
        }
    }
    let _ = printer.out.flush();
    src.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Inserts `DRC_MYSQL_PASSWORD` into a URL that has no password, so secrets need not be on the
/// command line (where `ps` shows them).
fn with_env_password(url: String) -> String {
    match std::env::var("DRC_MYSQL_PASSWORD") {
        Ok(pw) => drc_mysql::url_with_password(&url, &pw).unwrap_or(url),
        Err(_) => url,
    }
}
