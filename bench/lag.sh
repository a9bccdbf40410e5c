#!/usr/bin/env bash
# Commit-to-visible lag, drc against native MariaDB replication, in one run (issue #16).
#
# Source a gets a sysbench schema (4 tables x 25,000 rows, plus `sbtest.lagprobe`); two
# replicas of a start from the same position:
#   b  `drc run --center b` (release build): the link a->b, last-writer-wins on `updated_at`
#      (--conflict sw: source wins)
#   n  native replication, slave_parallel_threads = --native-threads (default 0: serial),
#      log_slave_updates ON, like a drc target
# All three servers are relaxed (innodb_flush_log_at_trx_commit=2, sync_binlog=0). For each
# background load (--loads, txn/s of sysbench oltp_write_only on a, 8 threads; 0 = idle), after
# 5 s of warm-up, the probe (crates/drc/tests/lag.rs `commit_to_visible_probe`) inserts a row
# into a's lagprobe and polls b and n for it at once, --probes times (default 300), 20 ms apart,
# and prints p50/p90/p99/max per replica and the mean of the first and the last tenth of the
# probes (growth under load shows as the second far above the first). Then the load stops, the
# time each replica needs to catch up to a's position is printed, and in the end both replicas'
# CHECKSUM TABLE must equal a's.
#
# Usage: bench/lag.sh [--loads 0,1000,3000] [--probes 300] [--native-threads 0] [--conflict lww|sw]
# DRC_EXTRA=$'[applier]\nparallelism = 1' appends TOML to drc's configuration.
# DRC_BIN=<path> runs that drc binary instead of building the release one; KEEP=1 keeps the
# servers and the directory. Needs mariadb-server and sysbench (apt-get install -y).
# The old idle-only comparison of [applier] batch_delay_ms values inside the test cluster:
#   DRC_LAG_DELAYS=10,0 cargo test --release -p drc --test main lag::commit_to_visible_lag_idle -- --ignored --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

LOADS=0,1000,3000 PROBES=300 NATIVE_THREADS=0 CONFLICT=lww
while [ $# -gt 0 ]; do
  case "$1" in
    --loads) LOADS=$2; shift 2 ;;
    --probes) PROBES=$2; shift 2 ;;
    --native-threads) NATIVE_THREADS=$2; shift 2 ;;
    --conflict) CONFLICT=$2; shift 2 ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$CONFLICT" in
  lww) VERSION='"updated_at"' ;;
  sw) VERSION='""' ;;
  *) echo "--conflict is lww or sw, not $CONFLICT" >&2; exit 2 ;;
esac
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_tools mariadbd mariadb-install-db mariadb sysbench curl
drc_binary
# The probe: the debug test binary is enough (it waits on the network, not on its CPU).
cargo test -q -p drc --test main --no-run 2>/dev/null
PROBE_CMD=(cargo test -q -p drc --test main lag::commit_to_visible_probe -- --ignored --exact --nocapture)

SB_PID=
before_cleanup() { [ -z "$SB_PID" ] || kill "$SB_PID" 2>/dev/null || true; }
bench_setup lag
machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

sysbench_source 4 25000
sql "$A_PORT" "CREATE TABLE sbtest.lagprobe (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
mariadb-dump --protocol=tcp -h127.0.0.1 -P"$A_PORT" -uroot --single-transaction --skip-triggers \
  --databases sbtest >"$WORK/seed.sql"
START=$(sql "$A_PORT" "SELECT @@gtid_binlog_pos")

start_server b 2 2 0
B_PORT=$PORT
start_server n 3 2 0
N_PORT=$PORT
for p in "$B_PORT" "$N_PORT"; do
  mariadb --protocol=tcp -h127.0.0.1 -P"$p" -uroot --init-command="SET sql_log_bin = 0" <"$WORK/seed.sql"
done
replicate_from_a "$N_PORT" "$START" "$NATIVE_THREADS"
sql "$N_PORT" "START SLAVE"
METRICS_PORT=$(free_port)
drc_config "$WORK/drc.toml" "$VERSION" "${DRC_EXTRA:-}"
"$DRC" run --config "$WORK/drc.toml" --center b --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --start "a=$START" --log warn 2>"$WORK/drc.log" &
DRC_PID=$!
PIDS+=("$DRC_PID")

# wait_caught_up: until b's link and n have applied a's current position, both polled in one
# loop; prints the seconds each took. drc's side is its newest checkpoint row (/health has no
# position before a link's first batch, and here a link may start with nothing to apply); that
# row can lead the other workers of its batch by a commit, so the figure may be short by that.
wait_caught_up() {
  local end t0 tb="" tn="" err now
  end=$(sql "$A_PORT" "SELECT @@gtid_binlog_pos")
  t0=$(date +%s.%N)
  while [ -z "$tb" ] || [ -z "$tn" ]; do
    now=$(date +%s.%N)
    if [ -z "$tb" ]; then
      kill -0 "$DRC_PID" 2>/dev/null || { echo "drc run stopped:" >&2; cat "$WORK/drc.log" >&2; exit 1; }
      [ "$(sql "$B_PORT" "SELECT end_position FROM drc_meta.checkpoint WHERE link = 'a->b' ORDER BY batch DESC LIMIT 1" 2>/dev/null)" != "$end" ] ||
        tb=$(calc "$now - $t0")
    fi
    if [ -z "$tn" ]; then
      if [ "$(sql "$N_PORT" "SELECT MASTER_GTID_WAIT('$end', 0)")" = "0" ]; then
        tn=$(calc "$now - $t0")
      else
        err=$(sql "$N_PORT" "SHOW SLAVE STATUS\G" | awk -F': ' '/Last_SQL_Error/ {print $2}')
        [ -z "$err" ] || { echo "native replication failed: $err" >&2; exit 1; }
      fi
    fi
    sleep 0.05
  done
  echo "drc ${tb}s, native ${tn}s"
}
# batch_stats: "<batches> <seconds in batches> <rows applied>" of the link a->b so far.
batch_stats() {
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
    /^drc_apply_batch_duration_seconds_count\{link="a->b"\}/ {n = $2}
    /^drc_apply_batch_duration_seconds_sum\{link="a->b"\}/ {s = $2}
    /^drc_apply_rows_total\{.*link="a->b"/ {r += $2}
    END {print n + 0, s + 0, r + 0}'
}
wait_caught_up >/dev/null
echo "conflict mode: $CONFLICT; native slave_parallel_threads: $NATIVE_THREADS; probes: $PROBES"

n=0
for load in ${LOADS//,/ }; do
  n=$((n + 1))
  if [ "$load" -gt 0 ]; then
    "${SB[@]}" --threads=8 --rate="$load" --time=0 --events=0 --report-interval=0 \
      oltp_write_only run >"$WORK/sb-$load.log" 2>&1 &
    SB_PID=$!
    sleep 5
  fi
  trx0=$(sql "$A_PORT" "SELECT SUBSTRING_INDEX(@@gtid_binlog_pos, '-', -1)")
  t0=$(date +%s.%N)
  read -r nb0 sb0 rb0 <<<"$(batch_stats)"
  DRC_LAG_SOURCE="mysql://root@127.0.0.1:$A_PORT" \
  DRC_LAG_TARGETS="drc=mysql://root@127.0.0.1:$B_PORT,native=mysql://root@127.0.0.1:$N_PORT" \
  DRC_LAG_PROBES=$PROBES DRC_LAG_BASE=$((n * 1000000)) DRC_LAG_LABEL="at $load txn/s" \
    "${PROBE_CMD[@]}" 2>&1 | grep -E '^lag |panicked' || true
  trx1=$(sql "$A_PORT" "SELECT SUBSTRING_INDEX(@@gtid_binlog_pos, '-', -1)")
  rate=$(calc "($trx1 - $trx0 - $PROBES) / ($(date +%s.%N) - $t0)")
  read -r nb1 sb1 rb1 <<<"$(batch_stats)"
  nb=$((nb1 - nb0))
  [ "$nb" -gt 0 ] || nb=1
  echo "  drc during the probes: $((nb1 - nb0)) batches, mean $(calc "($sb1 - $sb0) * 1000 / $nb") ms in a batch, $(calc "($rb1 - $rb0) / $nb") rows a batch, $(calc "($sb1 - $sb0) * 100 / ($(date +%s.%N) - $t0)")% of the time applying"
  if [ -n "$SB_PID" ]; then
    if ! kill -0 "$SB_PID" 2>/dev/null; then
      echo "  sysbench stopped before the probes ended (a could not keep up with $load txn/s?):"
      grep -E 'FATAL|error' "$WORK/sb-$load.log" | head -3 | sed 's/^/    /'
    fi
    kill "$SB_PID" 2>/dev/null || true; wait "$SB_PID" 2>/dev/null || true; SB_PID=
  fi
  echo "  load $load txn/s: a committed $rate txn/s of background load during the probes (load average $(cut -d' ' -f1 /proc/loadavg)); caught up after the load stopped: $(wait_caught_up)"
done

sums() { sql "$1" "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4, sbtest.lagprobe" | awk '{print $2}' | tr '\n' ' '; }
A_SUM=$(sums "$A_PORT")
[ "$(sums "$B_PORT")" = "$A_SUM" ] || { echo "drc's b differs from a" >&2; exit 1; }
[ "$(sums "$N_PORT")" = "$A_SUM" ] || { echo "native's n differs from a" >&2; exit 1; }
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); b's and n's CHECKSUM TABLE equal a's ($A_SUM)"
