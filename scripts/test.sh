#!/usr/bin/env bash
# make test: the emulator on a free loopback port, then formatting, lints and the whole suite.
# Exits non-zero on any failure and leaves no process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/emulator-env.sh
scripts/browser-env.sh

. scripts/emulator-session.sh
emulator_session test quarry-test
export QUARRY_TEST_EMULATOR_PID_FILE="$EMULATOR_PIDFILE"

echo "==> terraform files parse and declare what a deployment needs"
.venv/bin/python scripts/check-terraform.py

echo "==> no import cycle between the top-level modules of src/"
python3 scripts/check-module-cycles.py
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets --features quarry/bench -- -D warnings
echo "==> cargo test (screenshots of the web view: target/ui-artifacts/)"
rm -rf target/test-hygiene
cargo test --locked --workspace --all-targets 2>&1 | tee target/test-output.log
echo "==> the heavy multi-instance tests (a 60-tick schedule on 3 instances, a 20-run queue on 2), after the rest"
cargo test --locked --test api -- --ignored --test-threads=2 --skip soak:: 2>&1 | tee -a target/test-output.log
echo "==> the 60-second soak: 3 instances behind a flapping BigQuery, its invariants checked (make soak: 10 minutes)"
cargo test --locked --test api -- --ignored --exact soak::soak_60_seconds --nocapture 2>&1 | tee -a target/test-output.log
echo "==> secret hygiene: no secret the suite used appears in any service log line"
python3 scripts/check-secret-hygiene.py
echo "==> bounded API fuzzing (schemathesis)"
scripts/fuzz.sh 3

# One closing line for the whole suite (the fuzzer prints last otherwise).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log
