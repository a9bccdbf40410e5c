#!/usr/bin/env bash
# Quickstart: three local centers (MariaDB on ports 3311-3313) kept in sync by three drc daemons
# (config/minimal.toml). Writes a row in a random center every second and shows every center's
# copy of the table, so you can watch changes arrive everywhere. Ctrl-C stops and removes it all.
#
#   bash scripts/quickstart.sh
#
# Needs a Rust toolchain; installs mariadb-server with apt-get when mariadbd is missing (as
# root). Respects CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

command -v cargo >/dev/null || { echo "quickstart: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
missing=0
for tool in mariadbd mariadb-install-db mariadb; do
  command -v "$tool" >/dev/null || missing=1
done
if [ "$missing" = 1 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "quickstart: installing mariadb-server (apt-get)..."
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  else
    echo "quickstart: mariadbd not found; install mariadb-server (as root: apt-get install -y mariadb-server)" >&2
    exit 1
  fi
fi
for port in 3311 3312 3313 9401 9402 9403; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "quickstart: port $port is in use; stop what listens there (the quickstart needs 3311-3313 and 9401-9403)" >&2
    exit 1
  fi
done

echo "quickstart: building drc (release)..."
cargo build --release -q -p drc
DRC="${CARGO_TARGET_DIR:-$PWD/target}/release/drc"

WORK=$(mktemp -d /tmp/drc-quickstart.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  trap '' PIPE
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
  echo "quickstart: stopped the daemons and servers, removed $WORK" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }

names=(a b c)
for i in 0 1 2; do
  port=$((3311 + i)); dir="$WORK/${names[$i]}"
  mkdir -p "$dir"
  mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1
  mariadbd --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
    --socket="$dir/sock" --user=root --server-id=$((i + 1)) --gtid-domain-id=$((i + 1)) \
    --log-bin="$dir/data/bin" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --auto-increment-increment=3 --auto-increment-offset=$((i + 1)) \
    --innodb-buffer-pool-size=64M --log-error="$dir/error.log" 2>>"$dir/error.log" &
  PIDS+=($!)
done
for port in 3311 3312 3313; do
  for _ in $(seq 1 300); do sql "$port" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
  sql "$port" "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.orders (
      id BIGINT AUTO_INCREMENT PRIMARY KEY, center CHAR(1) NOT NULL, item VARCHAR(40) NOT NULL,
      created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
done
echo "quickstart: three centers up (a=3311, b=3312, c=3313)"

for i in 0 1 2; do
  "$DRC" run --config config/minimal.toml --center "${names[$i]}" --log info --start now \
    2>"$WORK/drc-${names[$i]}.log" &
  PIDS+=($!)
done
for _ in $(seq 1 300); do
  "$DRC" status --config config/minimal.toml >/dev/null 2>&1 && break
  sleep 0.2
done
"$DRC" status --config config/minimal.toml || true
echo "quickstart: daemons running (logs in $WORK/drc-*.log). Writing a row every second; Ctrl-C to stop."

items=(apple pear plum fig kiwi lime)
n=0
while true; do
  i=$((RANDOM % 3)); n=$((n + 1))
  item="${items[$((RANDOM % ${#items[@]}))]}-$n"
  sql $((3311 + i)) "INSERT INTO shop.orders (center, item) VALUES ('${names[$i]}', '$item')"
  sleep 1
  echo "--- wrote '$item' in center ${names[$i]}; each center now has:"
  for j in 0 1 2; do
    printf "  %s: %s\n" "${names[$j]}" "$(sql $((3311 + j)) "SELECT CONCAT(COUNT(*), ' rows; newest: ', COALESCE((SELECT CONCAT(item, ' (written in ', center, ')') FROM shop.orders ORDER BY created_at DESC, id DESC LIMIT 1), '-')) FROM shop.orders")"
  done
done
