# Sourced by scripts that need a throw-away emulator for their whole run (make test, make soak):
#   emulator_session NAME PROJECT
# starts the BigQuery emulator on a free loopback port (pid and log under target/NAME-emulator.*),
# stops it when the calling script exits, and exports BIGQUERY_EMULATOR_HOST, GCP_PROJECT_ID and
# EMULATOR_PIDFILE for the commands that follow.
emulator_session() {
  local name=$1 project=$2 port logfile
  mkdir -p target
  EMULATOR_PIDFILE="target/$name-emulator.pid"
  logfile="target/$name-emulator.log"
  trap 'scripts/emulator.sh stop "$EMULATOR_PIDFILE"' EXIT INT TERM
  port=$(scripts/emulator.sh free-port)
  scripts/emulator.sh start "$port" "$project" "$EMULATOR_PIDFILE" "$logfile"
  echo "==> BigQuery emulator on 127.0.0.1:$port (log: $logfile)"
  export BIGQUERY_EMULATOR_HOST="127.0.0.1:$port"
  export GCP_PROJECT_ID="$project"
  export EMULATOR_PIDFILE
}
