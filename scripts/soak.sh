#!/usr/bin/env bash
# make soak: the emulator on a free loopback port, then the long soak (SOAK_SECS, 600 by
# default): three instances behind the BigQuery model (tests/common/bq_limits.rs) with flapping
# and lost answers, mixed load, and the invariant table printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/emulator-env.sh
mkdir -p target
PIDFILE=target/soak-emulator.pid
LOGFILE=target/soak-emulator.log
trap 'scripts/emulator.sh stop "$PIDFILE"' EXIT INT TERM
PORT=$(scripts/emulator.sh free-port)
PROJECT=quarry-soak
scripts/emulator.sh start "$PORT" "$PROJECT" "$PIDFILE" "$LOGFILE"
echo "==> BigQuery emulator on 127.0.0.1:$PORT (log: $LOGFILE)"
export BIGQUERY_EMULATOR_HOST="127.0.0.1:$PORT"
export GCP_PROJECT_ID="$PROJECT"
export SOAK_SECS="${SOAK_SECS:-600}"
echo "==> soak for $SOAK_SECS s"
cargo test --locked --test api -- --ignored --exact soak::soak_long --nocapture
