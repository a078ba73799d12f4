# Sourced by scripts that need throw-away emulators for their whole run (make test, make soak):
#   emulator_session NAME PROJECT [COUNT]
# starts COUNT BigQuery emulators (default 1) on free loopback ports (pid and log under
# target/NAME-emulator[-N].*), stops them all when the calling script exits, and exports
# BIGQUERY_EMULATOR_HOST (the first), QUARRY_TEST_EMULATORS (all, comma-separated: the API
# suite spreads its tests over them, the emulator being single-threaded), GCP_PROJECT_ID and
# EMULATOR_PIDFILE (the first's) for the commands that follow.
emulator_session() {
  local name=$1 project=$2 count=${3:-1} i port logfile pidfile hosts=""
  mkdir -p target
  EMULATOR_PIDFILES=()
  trap 'for f in "${EMULATOR_PIDFILES[@]}"; do scripts/emulator.sh stop "$f"; done' EXIT INT TERM
  for i in $(seq 1 "$count"); do
    if [ "$i" = 1 ]; then
      pidfile="target/$name-emulator.pid" logfile="target/$name-emulator.log"
    else
      pidfile="target/$name-emulator-$i.pid" logfile="target/$name-emulator-$i.log"
    fi
    port=$(scripts/emulator.sh free-port)
    EMULATOR_PIDFILES+=("$pidfile")
    scripts/emulator.sh start "$port" "$project" "$pidfile" "$logfile"
    echo "==> BigQuery emulator on 127.0.0.1:$port (log: $logfile)"
    hosts="${hosts:+$hosts,}127.0.0.1:$port"
  done
  export BIGQUERY_EMULATOR_HOST="${hosts%%,*}"
  export QUARRY_TEST_EMULATORS="$hosts"
  export GCP_PROJECT_ID="$project"
  export EMULATOR_PIDFILE="${EMULATOR_PIDFILES[0]}"
}
