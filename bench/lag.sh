#!/usr/bin/env bash
# Commit-to-visible lag between two centers through the real `drc run` daemons, idle (issue #16):
# 300 probes per `[applier] batch_delay_ms` value, p50/p90/p99/max. Three MariaDB servers and
# three daemons on this machine.
#   bash bench/lag.sh                         # DRC_LAG_DELAYS=10,0 DRC_LAG_PROBES=300
# Not yet: background load, and native replication side by side (issue #16).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test --release -q -p drc --test main lag:: -- --ignored --nocapture 2>&1 | grep -E '^batch_delay_ms|panicked|FAILED'
