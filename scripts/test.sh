#!/usr/bin/env bash
# The project's test command (README: "Test"). Runs every test of the workspace against
# throwaway MariaDB servers that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
cargo test --workspace "$@"
