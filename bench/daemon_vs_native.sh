#!/usr/bin/env bash
# Backlog apply through the real `drc run` binary against native MariaDB replication (issue #16).
#
# One sysbench oltp_write_only backlog (default 4 tables x 25,000 rows, 50,000 transactions =
# 200,000 row changes) is written into source center a. Then, one contender at a time, a fresh
# target server b gets a's data as of before the backlog and applies the backlog:
#
#   native:0 / native:4   native replication from a's GTID position, slave_parallel_threads 0
#                         (serial) or 4 (optimistic), log_slave_updates ON (it binlogs what it
#                         applies, as a drc target does)
#   drc:sw / drc:lww      `drc run --center b --start a=<position>` (release build), the link
#                         a->b with the default configuration; source wins
#                         (`[conflict] version_column = ""`) or last-writer-wins on the tables'
#                         `updated_at` column (with the local-delete reader, as in production)
#
# for each durability of the target: relaxed (innodb_flush_log_at_trx_commit=2, sync_binlog=0)
# and durable (1 and 1). Every target's CHECKSUM TABLE of every table must equal a's, or the run
# fails. Prints one table: wall seconds from the start of apply until the target holds a's end
# position, row changes/s, CPU seconds of the target's mariadbd, of the source's mariadbd (it
# sends its binlog to either contender) and of the drc process, how busy the whole machine's
# CPUs were meanwhile (/proc/stat: everything but idle and iowait, kernel included), and drc's
# peak RSS (VmHWM). The machine and its load are printed with the table.
#
# Usage: bench/daemon_vs_native.sh [--txns N] [--rows N] [--tables N] [--modes relaxed,durable]
#                                  [--contenders native:0,native:4,drc:sw,drc:lww]
# DRC_BIN=<path> uses that drc binary instead of building the release one. KEEP=1 leaves the
# servers running and the directory in place. DRC_EXTRA_TOML="<toml>" appends to drc's
# configuration (e.g. $'[applier]\nparallelism = 8'); MARIADB_EXTRA adds server options.
# Needs mariadbd, mariadb-install-db, mariadb (apt-get install -y mariadb-server) and sysbench
# (apt-get install -y sysbench). Everything runs under a temporary directory that is removed at
# the end; ports are picked free.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

TXNS=50000 ROWS=25000 TABLES=4
MODES=relaxed,durable
CONTENDERS=native:0,native:4,drc:sw,drc:lww
while [ $# -gt 0 ]; do
  case "$1" in
    --txns) TXNS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --tables) TABLES=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --contenders) CONTENDERS=$2; shift 2 ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_tools mariadbd mariadb-install-db mariadb sysbench curl
drc_binary

bench_setup dvn

checksums() {
  local list="" i
  for i in $(seq 1 "$TABLES"); do list="$list${list:+, }sbtest.sbtest$i"; done
  sql "$1" "CHECKSUM TABLE $list" | awk '{print $2}' | tr '\n' ' '
}

machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Source a: relaxed (it only holds the backlog).
sysbench_source "$TABLES" "$ROWS"
mariadb-dump --protocol=tcp -h127.0.0.1 -P"$A_PORT" -uroot --single-transaction --skip-triggers \
  --databases sbtest >"$WORK/seed.sql"
START=$(sql "$A_PORT" "SELECT @@gtid_binlog_pos")
"${SB[@]}" --threads=4 --events="$TXNS" --time=0 --report-interval=0 oltp_write_only run >"$WORK/run.log" 2>&1
END=$(sql "$A_PORT" "SELECT @@gtid_binlog_pos")
A_SUM=$(checksums "$A_PORT")
CHANGES=$((TXNS * 4))
echo "backlog: $TXNS oltp_write_only transactions ($CHANGES row changes) on $TABLES x $ROWS rows; a's GTIDs $START .. $END"

# machine_ticks: "busy total" jiffies of all CPUs from /proc/stat (busy: all but idle, iowait).
machine_ticks() {
  awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
# busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1": the share of the CPUs' time that was busy in between.
busy_pct() {
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$1"; read -r b1 t1 <<<"$2"
  calc "100 * ($b1 - $b0) / ($t1 - $t0)"
}

results=()
for mode in ${MODES//,/ }; do
  case "$mode" in
    relaxed) FLUSH=2 SYNC=0 ;;
    durable) FLUSH=1 SYNC=1 ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  for who in ${CONTENDERS//,/ }; do
    name="b-$mode-${who//:/-}"
    start_server "$name" 2 "$FLUSH" "$SYNC"
    B_PORT=$PORT B_PID=$PID
    mariadb --protocol=tcp -h127.0.0.1 -P"$B_PORT" -uroot --init-command="SET sql_log_bin = 0" <"$WORK/seed.sql"
    drc_cpu="-" rss="-"
    case "$who" in
      native:*)
        threads=${who#native:}
        replicate_from_a "$B_PORT" "$START" "$threads"
        cpu0=$(cpu_s "$B_PID"); s0=$(cpu_s "$A_PID"); m0=$(machine_ticks); t0=$(date +%s.%N)
        sql "$B_PORT" "START SLAVE"
        until [ "$(sql "$B_PORT" "SELECT MASTER_GTID_WAIT('$END', 1)")" = "0" ]; do
          err=$(sql "$B_PORT" "SHOW SLAVE STATUS\G" | awk -F': ' '/Last_SQL_Error/ {print $2}')
          [ -z "$err" ] || { echo "native replication failed: $err" >&2; exit 1; }
        done
        t1=$(date +%s.%N); cpu1=$(cpu_s "$B_PID"); s1=$(cpu_s "$A_PID"); m1=$(machine_ticks)
        sql "$B_PORT" "STOP SLAVE"
        ;;
      drc:*)
        version='""'
        [ "$who" = drc:lww ] && version='"updated_at"'
        drc_config "$WORK/$name.toml" "$version" "${DRC_EXTRA_TOML:-}"
        cpu0=$(cpu_s "$B_PID"); s0=$(cpu_s "$A_PID"); m0=$(machine_ticks); t0=$(date +%s.%N)
        metrics=$(free_port)
        "$DRC" run --config "$WORK/$name.toml" --center b --start "a=$START" --log warn \
          --metrics-listen "127.0.0.1:$metrics" 2>"$WORK/$name.drc.log" &
        DRC_PID=$!
        PIDS+=("$DRC_PID")
        # Done when the link has applied up to a's end position, every worker's share of the
        # last batch included.
        wait_link_position "$metrics" "$END" "$DRC_PID" ||
          { echo "drc run stopped:" >&2; cat "$WORK/$name.drc.log" >&2; exit 1; }
        t1=$(date +%s.%N); cpu1=$(cpu_s "$B_PID"); s1=$(cpu_s "$A_PID"); m1=$(machine_ticks)
        drc_cpu=$(cpu_s "$DRC_PID")
        rss=$(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$DRC_PID/status")
        kill "$DRC_PID"; wait "$DRC_PID" 2>/dev/null || true
        ;;
      *) echo "unknown contender $who" >&2; exit 2 ;;
    esac
    B_SUM=$(checksums "$B_PORT")
    [ "$B_SUM" = "$A_SUM" ] || { echo "$mode $who: checksums differ: a $A_SUM, b $B_SUM" >&2; exit 1; }
    wall=$(calc "$t1 - $t0")
    line=$(printf "%-8s %-9s %8.3f %9.0f %8.2f %8.2f %8s %7.0f %11s" "$mode" "$who" "$wall" \
      "$(calc "$CHANGES / $wall")" "$(calc "$cpu1 - $cpu0")" "$(calc "$s1 - $s0")" "$drc_cpu" \
      "$(busy_pct "$m0" "$m1")" "$rss")
    echo "$line" >&2
    results+=("$line")
    [ -n "${KEEP:-}" ] || stop_server "$B_PID"
    [ -n "${KEEP:-}" ] || rm -rf "${WORK:?}/$name"
  done
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-8s %-9s %8s %9s %8s %8s %8s %7s %11s\n" mode contender "wall s" "rows/s" "T cpu s" "S cpu s" "drc cpu" "busy %" "drc VmHWM"
printf "%s\n" "${results[@]}"
echo "(every target's CHECKSUM TABLE equals a's: $A_SUM)"
