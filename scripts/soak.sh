#!/usr/bin/env bash
# make soak: the emulator on a free loopback port, then the long soak (SOAK_SECS, 600 by
# default): three instances behind the BigQuery model (tests/common/bq_limits.rs) with flapping
# and lost answers, mixed load, and the invariant table printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/emulator-env.sh
. scripts/emulator-session.sh
emulator_session soak quarry-soak
export SOAK_SECS="${SOAK_SECS:-600}"
echo "==> soak for $SOAK_SECS s"
cargo test --locked --test api -- --ignored --exact soak::soak_long --nocapture
