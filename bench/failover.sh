#!/usr/bin/env bash
# Failover benchmark: three drc replicas of center b (default election timeouts: heartbeat
# 100 ms, election timeout 300-600 ms), rows flowing in from center a; 10 times the leader is
# SIGKILLed and the time until the new leader took the fence and committed its first apply
# transaction is read from b's database (term_history.started_at, apply_log.committed_at,
# against NOW(6) taken just before the kill). The killed replica is restarted between runs.
# Ends with the same exactly-once and single-writer checks as the failover tests.
#
# Usage: bench/failover.sh            (FAILOVER_RUNS=N to change the number of kills)
# Needs mariadbd and mariadb-install-db (apt-get install -y mariadb-server).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "server: $(mariadbd --version 2>/dev/null || echo 'mariadbd not found')"
echo "load before: $(uptime | sed 's/.*load average: //')"

# Release build of the test binary and of drc, first, so that compiling does not overlap.
cargo test --release -p drc --test main --no-run
cargo test --release -p drc --test main raft_failover_timing -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^(run |SIGKILL|test result)'
echo "load after: $(uptime | sed 's/.*load average: //')"
