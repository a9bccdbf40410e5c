#!/usr/bin/env bash
# Bootstrap benchmark: `drc bootstrap --center c --from a` copying a sysbench-like table
# (sbtest1: id INT PK, k INT, c CHAR(120), pad CHAR(60), KEY k_1(k); 1,000,000 rows by default)
# between two fresh local MariaDB servers. Prints the machine, the load, drc's own summary
# (rows/s of the copy) and the peak RSS of the drc process (/usr/bin/time -v).
#
# Usage: bench/bootstrap.sh [ROWS] [extra drc bootstrap flags]
#   e.g. bench/bootstrap.sh 1000000 --writers 2 --chunk-rows 5000
# Needs mariadbd, mariadb-install-db, mariadb (apt-get install -y mariadb-server) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
shift || true

echo "== $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "server: $(mariadbd --version 2>/dev/null || echo 'mariadbd not found')"

cargo build --release -p drc >&2
BIN=${CARGO_TARGET_DIR:-target}/release/drc

DIR=$(mktemp -d /tmp/drc-bench-bootstrap.XXXXXX)
PIDS=()
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
    --innodb-buffer-pool-size=1G --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
    --max-allowed-packet=64M --skip-name-resolve >"$d/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    mariadb -uroot -S "$d/sock" -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server $1 did not start:" >&2; tail "$d/log" >&2; exit 1
}
PA=$((20000 + RANDOM % 10000)); PC=$((PA + 1))
start a "$PA" 1
start c "$PC" 3

mariadb -uroot -S "$DIR/a/sock" -e "CREATE DATABASE sbtest; CREATE TABLE sbtest.sbtest1 (
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
  FROM seq_1_to_$ROWS;"

cat >"$DIR/drc.toml" <<TOML
[[center]]
name = "a"
mysql = "mysql://root@127.0.0.1:$PA"

[[center]]
name = "c"
mysql = "mysql://root@127.0.0.1:$PC"

[replication]
databases = ["sbtest"]
TOML

echo "rows: $ROWS; flags: $*"
echo "load before: $(uptime | sed 's/.*load average: //')"
/usr/bin/time -v "$BIN" bootstrap --config "$DIR/drc.toml" --center c --from a \
  --progress plain --progress-interval 2 "$@" 2>"$DIR/time" | tee "$DIR/out"
echo "load after: $(uptime | sed 's/.*load average: //')"
grep -E '^bootstrap c <- a' "$DIR/time" | tail -1
grep -E 'Elapsed|Maximum resident|User time|System time' "$DIR/time"
echo "checksum a: $(mariadb -uroot -S "$DIR/a/sock" -N -e 'CHECKSUM TABLE sbtest.sbtest1' | cut -f2)"
echo "checksum c: $(mariadb -uroot -S "$DIR/c/sock" -N -e 'CHECKSUM TABLE sbtest.sbtest1' | cut -f2)"
