#!/usr/bin/env bash
# Cutover timings under routed load (issue #14): runs the end-to-end cutover test RUNS times
# (default 5) against three real MariaDB servers and the drc daemons, and prints each run's
# step durations, the time the moved keys were not writable, and the writers' rate.
#   bash bench/cutover.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
runs="${1:-5}"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
for i in $(seq 1 "$runs"); do
  echo "--- run $i"
  cargo test -q -p drc --test main routing::a_center_moves -- --nocapture 2>&1 \
    | grep -E '^(step [0-9]|done:|routed load)' || { echo "run $i failed"; exit 1; }
done
