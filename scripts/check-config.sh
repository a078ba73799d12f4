#!/usr/bin/env bash
# make check-config: the settings make run would use (.env.local and the local defaults),
# checked and printed with secrets masked, with the pipeline and provider definitions.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/local-env.sh
. scripts/local-env.sh
cargo run --quiet --locked --bin quarry -- check-config
