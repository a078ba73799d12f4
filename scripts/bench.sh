#!/usr/bin/env bash
# make bench: the performance figures, against a throw-away emulator. Installs wrk (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "==> installing wrk"
  apt-get update -qq && apt-get install -y -qq wrk
fi
scripts/emulator-env.sh
mkdir -p target
PIDFILE=target/bench-emulator.pid
trap 'scripts/emulator.sh stop "$PIDFILE"' EXIT INT TERM
PORT=$(scripts/emulator.sh free-port)
scripts/emulator.sh start "$PORT" quarry-test "$PIDFILE" target/bench-emulator.log
BIGQUERY_EMULATOR_HOST="127.0.0.1:$PORT" GCP_PROJECT_ID=quarry-test RUST_LOG=error \
  cargo run --locked --release --features bench --example bench
