//! The `sh` supervisor that owns one `mariadbd` process and its directory.
//!
//! Why: a test process may panic, abort or be `SIGKILL`ed, and servers kept in a `static` are never
//! dropped at all. Whatever happens, no `mariadbd` and no directory may be left behind. So the
//! server is not a child of the test process but of a tiny shell script whose **stdin is a pipe
//! whose only write end is held by the test process** (Rust creates it close-on-exec, so no other
//! child inherits it). The kernel closes that end when the test process dies, however it dies.
//!
//! Protocol, one line per command on the supervisor's stdin, one reply line on its stdout:
//!
//! | command | effect                                                            | reply         |
//! |---------|-------------------------------------------------------------------|---------------|
//! | `start` | start `mariadbd` in the background (reaping any previous one)     | `started PID` |
//! | `stop`  | `SIGTERM` and wait: graceful shutdown, data kept                  | `stopped`     |
//! | `kill`  | `SIGKILL` and wait: a crash, data kept                            | `stopped`     |
//! | EOF     | if `DIR/.keep` exists: `SIGTERM` and wait (data kept); otherwise `SIGKILL`, wait and `rm -rf DIR`; then exit | — |
//!
//! `SIGTERM`/`SIGHUP`/`SIGINT` sent to the supervisor interrupt its `read`, which then behaves like
//! EOF (cleanup). It runs in its own process group, so a Ctrl-C on the terminal reaches only the
//! test process (whose death then closes the pipe). `SIGPIPE` is ignored so that a reply written
//! after the test process died cannot kill the script before it cleans up.
//!
//! `mariadbd` exiting on its own is not reported by the script (it is blocked in `read`); the
//! server's liveness is read from `/proc/PID/stat` instead, where an exited but not yet reaped
//! server shows state `Z`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::TestkitError;

/// The supervisor script. `$1` is the server's directory, the rest is the `mariadbd` command line.
const SCRIPT: &str = r#"
dir=$1
shift
pid=
trap '' PIPE
trap ':' TERM HUP INT
halt() {
  if [ -n "$pid" ]; then
    kill "-$1" "$pid" 2>/dev/null
    resend=
    if [ "$1" = TERM ]; then
      # A TERM that lands between fork and exec hits the forked shell, whose trap ignores it;
      # so it is sent again every second until the server is gone.
      ( while sleep 1; do kill -TERM "$pid" 2>/dev/null || exit 0; done ) </dev/null >/dev/null 2>&1 &
      resend=$!
    fi
    wait "$pid" 2>/dev/null
    if [ -n "$resend" ]; then
      kill -KILL "$resend" 2>/dev/null
    fi
    pid=
  fi
}
while read -r cmd; do
  case "$cmd" in
    start)
      halt KILL
      "$@" </dev/null >>"$dir/mariadbd.out" 2>&1 &
      pid=$!
      echo "started $pid"
      ;;
    stop) halt TERM; echo stopped ;;
    kill) halt KILL; echo stopped ;;
    *) echo "unknown command: $cmd" ;;
  esac
done
if [ -e "$dir/.keep" ]; then
  halt TERM
else
  halt KILL
  rm -rf "$dir"
fi
"#;

/// Handle on a running supervisor. Dropping it closes the pipe and waits for the cleanup.
pub(crate) struct Supervisor {
    dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Mutex<Receiver<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Spawns a supervisor for the server living in `dir` (which it will delete on EOF) whose
    /// command line is `program args...`. Does not start the server yet.
    pub(crate) fn spawn(dir: &Path, program: &Path, args: &[String]) -> Result<Self, TestkitError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("drc-testkit-supervisor")
            .arg(dir)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| TestkitError::io("spawn the mariadbd supervisor (sh)", e))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        let reader = stdout.map(|out| {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        });
        Ok(Self {
            dir: dir.to_owned(),
            child,
            stdin,
            replies: Mutex::new(rx),
            reader,
        })
    }

    /// Sends `start` and returns the new `mariadbd` pid.
    pub(crate) fn start(&mut self) -> Result<u32, TestkitError> {
        self.send("start")?;
        let reply = self.reply(Duration::from_secs(10))?;
        reply
            .strip_prefix("started ")
            .and_then(|pid| pid.trim().parse().ok())
            .ok_or_else(|| self.error(format!("answered {reply:?} to start")))
    }

    /// Sends `stop` (graceful) or `kill` (`SIGKILL`) and waits up to `deadline` for the server to
    /// be gone. If a graceful stop takes longer, `mariadbd` is killed.
    pub(crate) fn halt(
        &mut self,
        graceful: bool,
        pid: Option<u32>,
        deadline: Duration,
    ) -> Result<(), TestkitError> {
        self.send(if graceful { "stop" } else { "kill" })?;
        match self.reply(deadline) {
            Ok(reply) if reply == "stopped" => Ok(()),
            Ok(reply) => Err(self.error(format!("answered {reply:?} to stop"))),
            Err(_) if graceful && pid.is_some() => {
                let pid = pid.unwrap_or_default();
                tracing::warn!(pid, "mariadbd did not shut down in time; killing it");
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                let reply = self.reply(Duration::from_secs(10))?;
                if reply == "stopped" {
                    Ok(())
                } else {
                    Err(self.error(format!("answered {reply:?} to stop")))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The supervisor's pid (tests use it to check nothing is left).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, command: &str) -> Result<(), TestkitError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.error("has no stdin any more".to_owned()));
        };
        let sent = stdin
            .write_all(format!("{command}\n").as_bytes())
            .and_then(|()| stdin.flush());
        sent.map_err(|e| self.error(format!("did not accept {command:?}: {e}")))
    }

    fn reply(&self, deadline: Duration) -> Result<String, TestkitError> {
        let replies = self
            .replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match replies.recv_timeout(deadline) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(self.error(format!("did not answer within {deadline:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.error("exited unexpectedly".into())),
        }
    }

    fn error(&self, what: String) -> TestkitError {
        TestkitError::Supervisor {
            what,
            dir: self.dir.clone(),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // EOF on the pipe: the script kills the server and removes the directory (or, with
        // `.keep`, shuts it down gracefully), then exits.
        drop(self.stdin.take());
        if let Err(e) = self.child.wait() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "waiting for the mariadbd supervisor failed");
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Whether process `pid` exists and has not exited (an exited, unreaped process is a zombie).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "PID (COMM) STATE ..."; COMM may contain spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X") | Some("x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
    }

    /// The script itself, with `sleep` standing in for `mariadbd`: EOF kills the "server" and
    /// removes the directory.
    #[test]
    fn eof_kills_the_server_and_removes_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let sleep = PathBuf::from("sleep");
        let mut sup = Supervisor::spawn(&dir, &sleep, &["600".to_owned()]).expect("spawn");
        let pid = sup.start().expect("start");
        assert!(process_alive(pid));
        drop(sup);
        assert!(!process_alive(pid), "sleep {pid} survived EOF");
        assert!(!dir.exists(), "{} survived EOF", dir.display());
    }

    #[test]
    fn stop_and_kill_keep_the_directory_and_start_works_again() {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let sleep = PathBuf::from("sleep");
        let mut sup = Supervisor::spawn(&dir, &sleep, &["600".to_owned()]).expect("spawn");
        let first = sup.start().expect("start");
        sup.halt(true, Some(first), Duration::from_secs(10))
            .expect("stop");
        assert!(!process_alive(first));
        assert!(dir.exists());
        let second = sup.start().expect("start again");
        sup.halt(false, Some(second), Duration::from_secs(10))
            .expect("kill");
        assert!(!process_alive(second));
        assert!(dir.exists());
        drop(sup);
        assert!(!dir.exists());
    }

    #[test]
    fn keep_file_preserves_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let sleep = PathBuf::from("sleep");
        let mut sup = Supervisor::spawn(&dir, &sleep, &["600".to_owned()]).expect("spawn");
        let pid = sup.start().expect("start");
        std::fs::write(dir.join(".keep"), b"").expect("keep");
        drop(sup);
        assert!(!process_alive(pid));
        assert!(dir.exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
