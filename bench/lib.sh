# Shared by bench/daemon_vs_native.sh and bench/lag.sh (sourced, not run): throwaway MariaDB
# servers from one template datadir under $WORK, on free loopback ports. The caller sets WORK
# and PIDS=() and removes them at exit.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }   # utime + stime (USER_HZ 100)

# A template datadir, installed once and copied for each server.
make_template() {
  mariadb-install-db --no-defaults --datadir="$WORK/template" --auth-root-authentication-method=normal \
    --skip-test-db >"$WORK/install.log" 2>&1
}

# start_server NAME SERVER_ID FLUSH SYNC_BINLOG: sets PORT and PID. MARIADB_EXTRA adds server
# options (e.g. --performance-schema=ON to see where a target's time goes).
start_server() {
  local dir="$WORK/$1" port
  port=$(free_port)
  cp -a "$WORK/template" "$dir"
  mariadbd --no-defaults --datadir="$dir" --port="$port" --bind-address=127.0.0.1 \
    --socket="$dir/sock" --user=root --server-id="$2" --gtid-domain-id="$2" \
    --log-bin="$dir/bin" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --log-slave-updates=ON --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit="$3" --sync-binlog="$4" --max-connections=200 \
    --log-error="$dir/error.log" ${MARIADB_EXTRA:-} >/dev/null 2>&1 &
  PID=$!
  PORT=$port
  PIDS+=("$PID")
  for _ in $(seq 1 300); do sql "$port" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
  sql "$port" "SELECT 1" >/dev/null || { cat "$dir/error.log" >&2; exit 1; }
}

stop_server() { kill "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }

machine() {
  echo "== $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -h | awk '/^Mem:/ {print $2}') RAM"
  echo "server: $(mariadbd --version)"
}

# bench_setup NAME: a temporary directory $WORK (/tmp/drc-NAME.*), the server list $PIDS, the
# template datadir, and an exit trap that stops every server and removes $WORK. KEEP=1 leaves
# both (to look at a failed run). A script may define before_cleanup to stop its own
# processes first.
bench_setup() {
  WORK=$(mktemp -d "/tmp/drc-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  make_template
}

bench_cleanup() {
  if declare -F before_cleanup >/dev/null; then before_cleanup; fi
  if [ -n "${KEEP:-}" ]; then
    echo "kept $WORK and the servers (pids ${PIDS[*]})" >&2
    return
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# sysbench_source TABLES ROWS: source server a (relaxed) with a sysbench schema of TABLES
# tables of ROWS rows, each with the `updated_at` version column last-writer-wins uses (source
# wins ignores it). Sets A_PORT, A_PID and SB, the sysbench command with its connection and
# tables.
sysbench_source() {
  local i
  start_server a 1 2 0
  A_PORT=$PORT A_PID=$PID
  SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$A_PORT" --mysql-user=root
      --mysql-db=sbtest --tables="$1" --table-size="$2" --rand-seed=20261204)
  sql "$A_PORT" "CREATE DATABASE sbtest"
  "${SB[@]}" oltp_write_only prepare >"$WORK/prepare.log" 2>&1
  for i in $(seq 1 "$1"); do
    sql "$A_PORT" "ALTER TABLE sbtest.sbtest$i ADD COLUMN updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"
  done
}

# need_tools TOOL...: exits 2 naming the first one missing.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool not found (see the head of $0)" >&2; exit 2; }
  done
}

# drc_binary: sets DRC to $DRC_BIN when given (e.g. to compare two builds), or else to a
# fresh release build.
drc_binary() {
  if [ -n "${DRC_BIN:-}" ]; then
    DRC=$DRC_BIN
  else
    cargo build --release -q -p drc
    DRC="${CARGO_TARGET_DIR:-target}/release/drc"
  fi
}

# replicate_from_a PORT START THREADS: points the server on PORT at source a (A_PORT) from GTID
# position START, native replication with THREADS parallel threads (optimistic); not started.
replicate_from_a() {
  sql "$1" "SET GLOBAL gtid_slave_pos = '$2'; SET GLOBAL slave_parallel_threads = $3;
    SET GLOBAL slave_parallel_mode = 'optimistic';
    CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $A_PORT, MASTER_USER = 'root',
      MASTER_USE_GTID = slave_pos"
}

# drc_config FILE VERSION_COLUMN [EXTRA_TOML]: the topology of centers a (A_PORT) and b (B_PORT),
# replicating database sbtest, with `[conflict] version_column` = VERSION_COLUMN (a TOML
# string: '""' is source wins) and EXTRA_TOML appended.
drc_config() {
  cat >"$1" <<TOML
[[center]]
name = "a"
mysql = "mysql://root@127.0.0.1:$A_PORT"

[[center]]
name = "b"
mysql = "mysql://root@127.0.0.1:$B_PORT"

[replication]
databases = ["sbtest"]

[conflict]
version_column = $2

${3:-}
TOML
}

# wait_link_position METRICS_PORT POSITION PID: waits until the link a->b of the daemon PID,
# whose /health listens on METRICS_PORT, has applied up to POSITION completely (a worker's row
# in drc_meta.checkpoint is not enough: the other workers of the same batch may still be
# committing). One python3 process polls every 20 ms: a new curl and python3 per poll cost a
# third of a core on a 2-core machine, taken from the daemon being measured. Fails when PID
# exits first.
wait_link_position() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys, time, urllib.request
port, want, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"http://127.0.0.1:{port}/health"
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            links = json.load(r).get("links", [])
        pos = next((l.get("position") or "" for l in links if l.get("link") == "a->b"), "")
        if pos == want:
            sys.exit(0)
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    time.sleep(0.02)
PY
}
