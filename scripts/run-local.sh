#!/usr/bin/env bash
# make run: the service on local defaults, against the BigQuery emulator on loopback.
# Writes a development root key (printed once) and a local KMS key to .env.local on first use,
# and stops the emulator when the service stops.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/emulator-env.sh

if [ ! -f .env.local ]; then
  key=$(python3 -c 'import secrets; print("dev_root_" + secrets.token_urlsafe(32))')
  umask 077
  cat >.env.local <<ENV
# Written by make run for local development. Never use these values elsewhere.
CA_ROOT_API_KEY=$key
ENV
  echo "==> wrote a development root key to .env.local (shown once):"
  echo "    CA_ROOT_API_KEY=$key"
fi
if ! grep -q '^LOCAL_KMS_KEY=' .env.local; then
  kms=$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
  umask 077
  echo "LOCAL_KMS_KEY=$kms" >>.env.local
  echo "==> wrote a development KMS key to .env.local"
fi
# shellcheck source=scripts/local-env.sh
. scripts/local-env.sh

mkdir -p .emulator
PIDFILE=.emulator/emulator.pid
trap 'scripts/emulator.sh stop "$PIDFILE"' EXIT INT TERM
scripts/emulator.sh stop "$PIDFILE"
scripts/emulator.sh start "$EMULATOR_PORT" "$GCP_PROJECT_ID" "$PIDFILE" .emulator/emulator.log \
  --persistent --data-dir .emulator/data
echo "==> BigQuery emulator on $BIGQUERY_EMULATOR_HOST (data in .emulator/data)"
echo "==> building quarry (the first build takes a few minutes)"
cargo build --locked --bin quarry
echo "==> Quarry on http://$BIND_ADDR: web view http://$BIND_ADDR/ui, API docs http://$BIND_ADDR/docs"
echo "    the root key is CA_ROOT_API_KEY in .env.local (grep CA_ROOT_API_KEY .env.local);"
echo "    first time: bootstrap, then onboard an org (README, Quickstart)"
target/debug/quarry serve
