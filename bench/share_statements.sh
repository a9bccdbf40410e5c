#!/usr/bin/env bash
# What each statement of an idle one-row apply share costs the target (issue #16, "say where
# the time goes"): starts one throwaway relaxed MariaDB (binlog ROW/FULL, as a drc target) and
# runs bench/share_statements.py against it, which times multi-statement queries with and
# without each statement drc sends (fence guard, warning checks, checkpoint, term stamp,
# apply_log) and prints the p50 and mean round trip of each.
#
# Usage: bench/share_statements.sh [ROUNDS]   (default 1000; about a minute)
# Needs mariadbd, mariadb-install-db, mariadb (apt-get install -y mariadb-server), python3 and
# pymysql (pip install pymysql). FLUSH=1 SYNC=1 makes the server durable. KEEP=1 keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
source bench/lib.sh
python3 -c 'import pymysql' 2>/dev/null || { echo "needs pymysql: pip install pymysql" >&2; exit 2; }
bench_setup share-statements
start_server b 2 "${FLUSH:-2}" "${SYNC:-0}"
machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/share_statements.py "$PORT" "${1:-1000}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
