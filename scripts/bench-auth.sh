#!/usr/bin/env bash
# make bench-auth: the auth throughput benchmark against a throw-away emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/emulator-env.sh
mkdir -p target
PIDFILE=target/bench-emulator.pid
trap 'scripts/emulator.sh stop "$PIDFILE"' EXIT INT TERM
PORT=$(scripts/emulator.sh free-port)
scripts/emulator.sh start "$PORT" quarry-test "$PIDFILE" target/bench-emulator.log
BIGQUERY_EMULATOR_HOST="127.0.0.1:$PORT" GCP_PROJECT_ID=quarry-test \
  cargo run --locked --release --features bench --example auth_bench
