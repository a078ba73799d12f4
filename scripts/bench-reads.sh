#!/usr/bin/env bash
# make bench-reads: 1,000 watchers of 200 runs (500 pollers, 500 event streams) on one instance
# behind the BigQuery limits model (tests/common/bq_limits.rs), against a throw-away emulator.
# About 6 minutes after the release build (most of it onboarding ten orgs on the emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/emulator-env.sh
mkdir -p target
PIDFILE=target/bench-reads-emulator.pid
trap 'scripts/emulator.sh stop "$PIDFILE"' EXIT INT TERM
PORT=$(scripts/emulator.sh free-port)
scripts/emulator.sh start "$PORT" quarry-test "$PIDFILE" target/bench-reads-emulator.log
BIGQUERY_EMULATOR_HOST="127.0.0.1:$PORT" GCP_PROJECT_ID=quarry-test \
  cargo run --locked --release --features bench --example bench_reads
