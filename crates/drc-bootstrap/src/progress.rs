//! Progress of the copy: a bar with rows, MB/s and ETA when stderr is a terminal (indicatif),
//! plain lines every interval otherwise (logs, pipes, tests). Both go to stderr.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar on a terminal, else lines.
    Auto,
    /// Always lines.
    Plain,
    /// Nothing.
    Quiet,
}

/// The progress of one bootstrap.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
    total: u64,
    rows: u64,
    bytes: u64,
    started: Instant,
    last_line: Option<Instant>,
    interval: Duration,
}

impl Progress {
    /// Progress over about `total` rows (an estimate), labelled `label`.
    pub fn new(display: Display, label: &str, total: u64, interval: Duration) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (display == Display::Auto && terminal).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} rows {msg} ETA {eta}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(label.to_string());
            b
        });
        Progress {
            bar,
            plain: display == Display::Plain || (display == Display::Auto && !terminal),
            label: label.to_string(),
            total,
            rows: 0,
            bytes: 0,
            started: Instant::now(),
            last_line: None,
            interval,
        }
    }

    fn rates(&self) -> (f64, f64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        (self.rows as f64 / secs, self.bytes as f64 / secs / 1e6)
    }

    /// Rows and bytes copied so far (committed and recorded).
    pub fn advance(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
        if self.rows > self.total {
            self.total = self.rows;
            if let Some(b) = &self.bar {
                b.set_length(self.total);
            }
        }
        let (rps, mbps) = self.rates();
        if let Some(b) = &self.bar {
            b.set_position(self.rows);
            b.set_message(format!("{rps:.0} rows/s {mbps:.1} MB/s"));
        }
        if self.plain && self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
            self.last_line = Some(Instant::now());
            self.line();
        }
    }

    fn line(&self) {
        let (rps, mbps) = self.rates();
        let pct = if self.total > 0 {
            self.rows as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        let eta = if rps > 0.0 && self.total > self.rows {
            format!("{:.0} s", (self.total - self.rows) as f64 / rps)
        } else {
            "-".to_string()
        };
        eprintln!(
            "{}: {}/~{} rows ({pct:.0}%), {rps:.0} rows/s, {mbps:.1} MB/s, ETA {eta}",
            self.label, self.rows, self.total
        );
    }

    /// Prints a message above the bar, or as a line.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if self.plain => eprintln!("{}: {msg}", self.label),
            None => {}
        }
    }

    /// Ends the display; returns rows copied, bytes and the rows per second.
    pub fn finish(&mut self) -> (u64, u64, f64) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.plain {
            self.line();
        }
        (self.rows, self.bytes, self.rates().0)
    }
}
