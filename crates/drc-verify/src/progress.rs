//! Progress of a verify on stderr: on a terminal, an indicatif bar with the table, tables done,
//! chunks, rows/s and ETA (over the servers' row estimates); otherwise a plain line every
//! interval (logs, pipes, tests); or nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use drc_bootstrap::progress::Display;

/// The progress of one verify.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    rows: u64,
    chunks: u64,
    tables: usize,
    tables_done: usize,
    table: String,
    started: Instant,
    last_line: Option<Instant>,
    interval: Duration,
}

impl Progress {
    /// Progress over `tables` tables of about `total` rows.
    pub fn new(display: Display, tables: usize, total: u64, interval: Duration) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (display == Display::Auto && terminal).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "verify [{elapsed_precise}] {wide_bar} {pos}/{len} rows {msg} ETA {eta}",
            ) {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            plain: display == Display::Plain || (display == Display::Auto && !terminal),
            total,
            rows: 0,
            chunks: 0,
            tables,
            tables_done: 0,
            table: String::new(),
            started: Instant::now(),
            last_line: None,
            interval,
        }
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn message(&self) -> String {
        format!(
            "table {}/{} {} | {} chunks | {:.0} rows/s",
            (self.tables_done + 1).min(self.tables),
            self.tables,
            self.table,
            self.chunks,
            self.rate()
        )
    }

    /// A table starts.
    pub fn table(&mut self, name: &str) {
        self.table = name.to_string();
        if let Some(b) = &self.bar {
            b.set_message(self.message());
        }
    }

    /// A table is done.
    pub fn table_done(&mut self) {
        self.tables_done += 1;
    }

    /// A chunk of `rows` rows was compared.
    pub fn chunk(&mut self, rows: u64) {
        self.rows += rows;
        self.chunks += 1;
        if self.rows > self.total {
            self.total = self.rows;
            if let Some(b) = &self.bar {
                b.set_length(self.total);
            }
        }
        if let Some(b) = &self.bar {
            b.set_position(self.rows);
            b.set_message(self.message());
        }
        if self.plain && self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
            self.last_line = Some(Instant::now());
            self.line();
        }
    }

    fn line(&self) {
        let rate = self.rate();
        let eta = if rate > 0.0 && self.total > self.rows {
            format!("{:.0} s", (self.total - self.rows) as f64 / rate)
        } else {
            "-".to_string()
        };
        eprintln!(
            "verify: {}/~{} rows, {}, ETA {eta}",
            self.rows,
            self.total,
            self.message()
        );
    }

    /// Prints a message above the bar, or as a line.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if self.plain => eprintln!("verify: {msg}"),
            None => {}
        }
    }

    /// Ends the display.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.plain {
            self.line();
        }
    }
}
