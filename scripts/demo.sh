#!/usr/bin/env bash
# Starts a manager on its embedded store with the example policy, until the
# lab (bulkhead lab up) takes over this script's job.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin/bulkhead
DIR=${BULKHEAD_DEMO_DIR:-$PWD/.demo}
LISTEN=${BULKHEAD_DEMO_LISTEN:-127.0.0.1:8443}
PIDFILE=$DIR/manager.pid

down() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    echo "manager stopped"
  fi
  rm -f "$PIDFILE"
}

case "${1:-up}" in
down) down; exit 0 ;;
up) ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

down >/dev/null
mkdir -p "$DIR/manager"
"$BIN" manager --data-dir "$DIR/manager" --listen "$LISTEN" >"$DIR/manager.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 50); do
  curl -fsS --cacert "$DIR/manager/ca.crt" "https://$LISTEN/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fsS --cacert "$DIR/manager/ca.crt" "https://$LISTEN/healthz" >/dev/null 2>&1; then
  echo "the manager did not start; its log:" >&2
  cat "$DIR/manager.log" >&2
  exit 1
fi
export BULKHEAD_SERVER=https://$LISTEN BULKHEAD_TOKEN_FILE=$DIR/manager/admin.token BULKHEAD_CA=$DIR/manager/ca.crt
"$BIN" apply -f examples/shop.yaml -m "demo: example shop policy"

cat <<MSG

Bulkhead manager is running (pid $(cat "$PIDFILE"), log $DIR/manager.log).
  API:          https://$LISTEN/api/v1  (OpenAPI: /api/v1/openapi.json)
  admin token:  $DIR/manager/admin.token
  CA:           $DIR/manager/ca.crt

Point the CLI at it:
  export BULKHEAD_SERVER=https://$LISTEN BULKHEAD_TOKEN_FILE=$DIR/manager/admin.token BULKHEAD_CA=$DIR/manager/ca.crt

Then try:
  $BIN get policies
  $BIN eval --from 10.10.1.10 --to 10.10.3.10 --proto tcp --port 5432
  $BIN eval --from 10.10.1.10 --to 10.10.2.10 --port 8080 --app APP_TLS --tls-version 1.3

Stop it with: make demo-down
MSG
