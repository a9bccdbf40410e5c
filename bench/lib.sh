# Shared by bench/daemon_vs_native.sh and bench/lag.sh (sourced, not run): throwaway MariaDB
# servers from one template datadir under $WORK, on free loopback ports. The caller sets WORK
# and PIDS=() and removes them at exit.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }   # utime + stime (USER_HZ 100)

# A template datadir, installed once and copied for each server.
make_template() {
  mariadb-install-db --no-defaults --datadir="$WORK/template" --auth-root-authentication-method=normal \
    --skip-test-db >"$WORK/install.log" 2>&1
}

# start_server NAME SERVER_ID FLUSH SYNC_BINLOG: sets PORT and PID.
start_server() {
  local dir="$WORK/$1" port
  port=$(free_port)
  cp -a "$WORK/template" "$dir"
  mariadbd --no-defaults --datadir="$dir" --port="$port" --bind-address=127.0.0.1 \
    --socket="$dir/sock" --user=root --server-id="$2" --gtid-domain-id="$2" \
    --log-bin="$dir/bin" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --log-slave-updates=ON --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit="$3" --sync-binlog="$4" --max-connections=200 \
    --log-error="$dir/error.log" >/dev/null 2>&1 &
  PID=$!
  PORT=$port
  PIDS+=("$PID")
  for _ in $(seq 1 300); do sql "$port" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
  sql "$port" "SELECT 1" >/dev/null || { cat "$dir/error.log" >&2; exit 1; }
}

stop_server() { kill "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }

machine() {
  echo "== $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -h | awk '/^Mem:/ {print $2}') RAM"
  echo "server: $(mariadbd --version)"
}
