#!/usr/bin/env bash
# Binlog source benchmark: decode throughput (sysbench-like binlog of 1.3M row changes) and
# memory of the size scenarios (a 20 MiB blob row, a 1,000,000-row transaction).
#
# Usage: bench/source_throughput.sh [bench options]
#   e.g. bench/source_throughput.sh --runs 5
#        bench/source_throughput.sh --inserts 100000 --updates 20000 --deletes 10000 --no-size
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
cargo bench -p drc-source --bench source_throughput --no-run
cargo bench -p drc-source --bench source_throughput -- "$@"
