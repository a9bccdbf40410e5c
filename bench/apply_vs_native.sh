#!/usr/bin/env bash
# Apply benchmark: a drc link a -> b against native MariaDB replication (serial and parallel),
# applying the same sysbench oltp_write_only-like backlog (100,000 transactions, 400,000 row
# changes by default), in durable and relaxed target durability, on fresh servers, in one run.
#
# Usage: bench/apply_vs_native.sh [bench options]
#   e.g. bench/apply_vs_native.sh --mode relaxed --txns 20000
#        bench/apply_vs_native.sh --phases          # adds the timed pipeline and the grouped prototype
#        bench/apply_vs_native.sh --targets native:0,native:4,drc:4
# Needs mariadbd and mariadb-install-db (apt-get install -y mariadb-server).
# Prints the machine, the load, and the results table (stdout); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "server: $(mariadbd --version 2>/dev/null || echo 'mariadbd not found')"
echo "load before: $(uptime | sed 's/.*load average: //')"

# Build first so that compile time does not overlap the measurement.
cargo bench -p drc-apply --bench apply_vs_native --no-run
cargo bench -p drc-apply --bench apply_vs_native -- "$@"
echo "load after: $(uptime | sed 's/.*load average: //')"
