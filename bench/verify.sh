#!/usr/bin/env bash
# Verify benchmark: `drc verify` over three fresh local MariaDB servers holding the same
# sysbench-like table (sbtest1: id INT PK, k INT, c CHAR(120), pad CHAR(60), KEY k_1(k);
# 1,000,000 rows by default), no daemons and no writes (an idle cluster: every chunk agrees at
# the first read). Prints the machine, drc's report (rows/s per table and overall) and the
# verify's wall time.
#
# Usage: bench/verify.sh [ROWS] [extra drc verify flags]
#   e.g. bench/verify.sh 1000000 --chunk-time-ms 100
# DRC_PROFILE=debug uses a debug build (the servers do the hashing; drc only sends queries);
# DRC_BIN=<path>[,<path>...] runs those binaries instead of building one, one after the other
# on the same servers (to compare builds in one run); DRC_RUNS=N repeats that N times.
# Needs mariadbd, mariadb-install-db, mariadb (apt-get install -y mariadb-server).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
shift || true
PROFILE=${DRC_PROFILE:-release}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "server: $(mariadbd --version 2>/dev/null || echo 'mariadbd not found')"

if [ -n "${DRC_BIN:-}" ]; then
  IFS=, read -r -a BINS <<<"$DRC_BIN"
elif [ "$PROFILE" = release ]; then
  cargo build --release -p drc >&2
  BINS=("${CARGO_TARGET_DIR:-target}/release/drc")
else
  cargo build -p drc >&2
  BINS=("${CARGO_TARGET_DIR:-target}/debug/drc")
fi

DIR=$(mktemp -d /tmp/drc-bench-verify.XXXXXX)
PIDS=()
FILLS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

start() { # name port server_id
  local d="$DIR/$1"
  mkdir -p "$d"
  mariadb-install-db --no-defaults --datadir="$d/data" --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null 2>&1
  mariadbd --no-defaults --datadir="$d/data" --socket="$d/sock" --port="$2" \
    --bind-address=127.0.0.1 --user=root --server-id="$3" --gtid-domain-id="$3" \
    --log-bin="$d/binlog" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
    --max-allowed-packet=64M --skip-name-resolve >"$d/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    mariadb -uroot -S "$d/sock" -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server $1 did not start:" >&2; tail "$d/log" >&2; exit 1
}
P=$((20000 + RANDOM % 10000))
start a "$P" 1
start b "$((P + 1))" 2
start c "$((P + 2))" 3

for n in a b c; do
  mariadb -uroot -S "$DIR/$n/sock" -e "SET SESSION sql_log_bin = 0;
    CREATE DATABASE sbtest; CREATE TABLE sbtest.sbtest1 (
    id INT NOT NULL PRIMARY KEY, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '',
    pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) DEFAULT CHARSET=utf8mb4;
    USE sbtest;
    INSERT INTO sbtest.sbtest1 SELECT seq, FLOOR(RAND(seq) * $ROWS),
      CONCAT_WS('-', LPAD(seq % 99991, 11, '0'), LPAD(seq % 99989, 11, '0'), LPAD(seq % 99971, 11, '0'),
        LPAD(seq % 99961, 11, '0'), LPAD(seq % 99929, 11, '0'), LPAD(seq % 99923, 11, '0'),
        LPAD(seq % 99901, 11, '0'), LPAD(seq % 99881, 11, '0'), LPAD(seq % 99877, 11, '0'),
        LPAD(seq % 99871, 11, '0')),
      CONCAT_WS('-', LPAD(seq % 99859, 11, '0'), LPAD(seq % 99833, 11, '0'), LPAD(seq % 99829, 11, '0'),
        LPAD(seq % 99823, 11, '0'), LPAD(seq % 99817, 11, '0'))
    FROM seq_1_to_$ROWS;" &
  FILLS+=($!)
done
for p in "${FILLS[@]}"; do wait "$p"; done

cat >"$DIR/drc.toml" <<TOML
[[center]]
name = "a"
mysql = "mysql://root@127.0.0.1:$P"

[[center]]
name = "b"
mysql = "mysql://root@127.0.0.1:$((P + 1))"

[[center]]
name = "c"
mysql = "mysql://root@127.0.0.1:$((P + 2))"

[replication]
databases = ["sbtest"]
TOML

echo "rows: $ROWS; profile: $PROFILE; flags: $*"
echo "load before: $(uptime | sed 's/.*load average: //')"
# A first, unmeasured pass warms every server's buffer pool (the data was just written, but
# a production table read by verify is usually warm too).
"${BINS[0]}" verify --config "$DIR/drc.toml" --progress quiet >/dev/null
for run in $(seq 1 "${DRC_RUNS:-1}"); do
  for BIN in "${BINS[@]}"; do
    echo "-- run $run: $BIN"
    start_ns=$(date +%s%N)
    set +e
    "$BIN" verify --config "$DIR/drc.toml" --progress plain "$@"
    status=$?
    set -e
    end_ns=$(date +%s%N)
    echo "exit status: $status (0: all centers agree)"
    echo "wall: $(( (end_ns - start_ns) / 1000000 )) ms"
    [ "$status" = 0 ] || exit 1
  done
done
echo "load after: $(uptime | sed 's/.*load average: //')"
