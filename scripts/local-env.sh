# Sourced by make run and make check-config: the settings of a local run. The variables in
# .env.local (written by make run), then local defaults for what is not set.
if [ -f .env.local ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env.local
  set +a
fi
export ENVIRONMENT="${ENVIRONMENT:-development}"
export GCP_PROJECT_ID="${GCP_PROJECT_ID:-quarry-local}"
EMULATOR_PORT="${EMULATOR_PORT:-9050}"
export BIGQUERY_EMULATOR_HOST="127.0.0.1:$EMULATOR_PORT"
export BIND_ADDR="${BIND_ADDR:-127.0.0.1:8080}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export SCHEDULER_INTERVAL_SECS="${SCHEDULER_INTERVAL_SECS:-2}"
# Alerts may reach a receiver on this machine (development only).
export NOTIFY_ALLOW_LOCAL_TARGETS="${NOTIFY_ALLOW_LOCAL_TARGETS:-true}"
