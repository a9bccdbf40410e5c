#!/usr/bin/env bash
# The nemesis test (crates/drc/tests/nemesis, issue #19) as a long soak: runs seed after seed for
# SECONDS (default 3600), each with DRC_NEMESIS_SECS of writes under faults (default 30), and
# keeps going after a failure. Prints a summary: seeds run and passed, faults injected by kind,
# writes committed, and every failure's seed, replay command and log file.
#   bash bench/soak.sh 3600
#   DRC_NEMESIS_SECS=60 bash bench/soak.sh 7200
# Logs go to $SOAK_DIR (default /tmp/drc-soak-<date>); a failed seed's daemon logs are kept
# under $SOAK_DIR/logs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
total=${1:-3600}
per_seed=${DRC_NEMESIS_SECS:-30}
dir=${SOAK_DIR:-/tmp/drc-soak-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$dir/logs"
echo "soak: ${total} s, ${per_seed} s per seed; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); logs in $dir"
# Build, then run copies of the test and of drc: a rebuild during the soak changes nothing.
exe=$(cargo test -p drc --test nemesis --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/nemesis-[^"]*"' | head -1 | sed 's/.*:"//; s/"$//')
[ -x "$exe" ] || { echo "soak: building the nemesis test failed" >&2; cargo test -p drc --test nemesis --no-run; exit 2; }
mkdir -p "$dir/bin"
cp "$exe" "$dir/bin/nemesis"
cp target/debug/drc "$dir/bin/drc"
echo "soak: code at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)')"
start=$(date +%s)
round=0
failures=()
while :; do
  left=$(( total - ($(date +%s) - start) ))
  [ "$left" -gt $(( per_seed + 20 )) ] || break
  round=$((round + 1))
  chunk=$(( left < 900 ? left : 900 ))
  log="$dir/round-$round.log"
  if DRC_NEMESIS_SECS=$per_seed DRC_NEMESIS_BUDGET_SECS=$chunk DRC_TEST_LOGS="$dir/logs" \
      DRC_BIN="$dir/bin/drc" "$dir/bin/nemesis" --nocapture >"$log" 2>&1; then
    :
  else
    seed=$(grep -oE 'seed [0-9]+ failed' "$log" | head -1 | awk '{print $2}' || true)
    failures+=("seed ${seed:-?} (replay: DRC_NEMESIS_SEED=${seed:-?} DRC_NEMESIS_SECS=$per_seed cargo test -p drc --test nemesis -- --nocapture); log: $log")
    echo "soak: round $round FAILED at seed ${seed:-?} (log: $log)"
  fi
  passed=$(grep -c '^nemesis-tally' "$log" || true)
  echo "soak: round $round: $passed seeds passed ($(( $(date +%s) - start )) s elapsed)"
done
cat "$dir"/round-*.log | { grep '^nemesis-tally' || true; } | awk -v fails="${#failures[@]}" '
  { seeds++
    for (i = 1; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "faults") { n = split(kv[2], fs, ","); for (j = 1; j <= n; j++) { split(fs[j], f, ":"); faults[f[1]] += f[2]; total += f[2] } }
      if (kv[1] == "lww") lww += kv[2]
      if (kv[1] == "home") home += kv[2]
    } }
  END {
    printf "soak summary: %d seeds passed, %d failed; %d faults injected:", seeds, fails, total
    for (k in faults) printf " %s=%d", k, faults[k]
    printf "\nwrites committed: %d last-writer-wins, %d center-closure\n", lww, home
  }'
for f in "${failures[@]}"; do echo "failure: $f"; done
[ ${#failures[@]} -eq 0 ]
