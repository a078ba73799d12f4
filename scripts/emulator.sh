#!/usr/bin/env bash
# Starts the BigQuery emulator in the background on loopback and waits until its REST API answers.
#   scripts/emulator.sh start PORT PROJECT PIDFILE LOGFILE [extra bqemulator args]
#   scripts/emulator.sh stop PIDFILE
#   scripts/emulator.sh free-port
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  free-port)
    free_port
    ;;
  start)
    port=$2 project=$3 pidfile=$4 logfile=$5
    shift 5
    if ! python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",int(sys.argv[1])))' "$port" 2>/dev/null; then
      echo "port $port on 127.0.0.1 is already in use (another emulator?); choose another with EMULATOR_PORT" >&2
      exit 1
    fi
    grpc=$(free_port)
    # A session of its own, so the emulator and its children are stopped together. Started by
    # scripts/bqemulator-fast.py: the same emulator, its SQL parses remembered (see there).
    setsid .venv/bin/python scripts/bqemulator-fast.py start --rest-host 127.0.0.1 --rest-port "$port" \
      --grpc-host 127.0.0.1 --grpc-port "$grpc" --project "$project" \
      --log-level warning "$@" >"$logfile" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 150); do
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "the emulator exited; its log:" >&2; tail -n 30 "$logfile" >&2; exit 1
      fi
      if python3 - "$port" "$project" <<'PY' 2>/dev/null; then exit 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/bigquery/v2/projects/{sys.argv[2]}/datasets", timeout=1)
PY
      sleep 0.2
    done
    echo "the emulator did not answer within 30 s; its log:" >&2; tail -n 30 "$logfile" >&2
    exit 1
    ;;
  stop)
    pidfile=$2
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|free-port ..." >&2; exit 2
    ;;
esac
