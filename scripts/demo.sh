#!/usr/bin/env bash
# make demo / make demo-down: the lab (bulkhead lab up) with the shop
# scenario, until flow records arrive; then what to try next.
#
#   scripts/demo.sh preflight   checks what the demo needs, before building
#   scripts/demo.sh up          builds the lab (bin/bulkhead must exist)
#   scripts/demo.sh down        removes it
#
# The lab lives in $BULKHEAD_LAB_DIR (default /var/lib/bulkhead-lab), the
# directory every 'bulkhead lab' command uses by default.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin/bulkhead
DIR=${BULKHEAD_LAB_DIR:-/var/lib/bulkhead-lab}
export BULKHEAD_LAB_DIR=$DIR

need_root() {
  if [ "$(id -u)" != 0 ]; then
    cat >&2 <<MSG
make $1 needs root: the lab creates network namespaces, veth pairs and
nftables tables. Run it as root, for example:

  sudo make $1

(Go must be on root's PATH; the Makefile adds /usr/local/go/bin.)
MSG
    exit 1
  fi
}

preflight() {
  need_root "$1"
  if [ "$(uname -s)" != Linux ]; then
    echo "make $1 needs Linux (network namespaces and nftables)" >&2
    exit 1
  fi
  local missing=()
  for tool in ip nft; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "make $1 needs: ${missing[*]} (packages iproute2 and nftables)" >&2
    exit 1
  fi
  # The web console is built with Node.js (20.19 or newer) and npm.
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "make $1 needs node and npm to build the web console (Node.js 20.19 or newer)" >&2
    exit 1
  fi
}

# The demo before the lab ran a bare manager from .demo; stop it if it
# still runs, so that it does not hold the lab's port.
stop_old_demo() {
  local pidfile=.demo/manager.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" && echo "stopped the old demo manager (.demo)"
  fi
  rm -f "$pidfile"
}

down() {
  need_root demo-down
  stop_old_demo
  "$BIN" lab down --dir "$DIR"
}

up() {
  preflight demo
  stop_old_demo
  "$BIN" lab up --dir "$DIR"
  echo
  echo "Waiting for flow records between the workloads (at most 2 minutes)..."
  if ! "$BIN" lab wait --dir "$DIR" --pairs 10 --timeout 2m; then
    cat >&2 <<MSG

The lab runs, but its agents have not reported flows yet. Look at:
  $BIN lab status
  $DIR/agents/*.log   $DIR/manager.log
Remove the lab with: make demo-down
MSG
    exit 1
  fi
  eval "$("$BIN" lab env --dir "$DIR")"
  # The IDS in detect mode on the web tier, with the lab's signatures:
  # shopper1's exploit client makes alerts appear within a few minutes.
  if ! "$BIN" get idsprofile web-tier >/dev/null 2>&1; then
    "$BIN" ids import examples/ids/lab.rules --name lab >/dev/null
    "$BIN" apply -f examples/ids/lab-ids-profile.yaml -m "demo: IDS detect on the web tier" >/dev/null
  fi
  local envflag=""
  [ "$DIR" = /var/lib/bulkhead-lab ] || envflag=" --dir $DIR"
  cat <<MSG

The Bulkhead lab is up, and flows are flowing.

  Console:      $BULKHEAD_SERVER/
                Open it in a browser and log in by pasting the admin token
                (the contents of $BULKHEAD_TOKEN_FILE). The browser asks you to
                trust the manager's own CA ($BULKHEAD_CA) or to accept a warning.
                Map: what talks to what (IDS alerts on the edges);
                Recommendations: a zero-trust policy for an app from its
                flows, applied in one click.
  Admin token:  $BULKHEAD_TOKEN_FILE
  CA:           $BULKHEAD_CA

Point the CLI at the lab's manager (as root):

  eval "\$($BIN lab env$envflag)"

Then try:

  $BIN map --level app --since 1h         # what talks to what, by application
  $BIN discover apps --since 1h           # tags proposed for the untagged workloads
  $BIN recommend --scope 'all()' --since 1h            # a zero-trust draft with its evidence
  $BIN recommend --scope 'all()' --since 1h --apply    # publish it to every agent
  $BIN compliance --level app --since 1h  # green, red only for the attacker
  $BIN lab exec attacker -- nc -zv -w 2 10.77.3.10 5432    # db1: dropped now
  $BIN ids alerts --since 1h              # IDS alerts on the web tier (detect mode)

More in README.md ("A five-minute tour"). Remove the lab with: make demo-down
MSG
}

case "${1:-up}" in
preflight) preflight "${2:-demo}" ;;
up) up ;;
down) down ;;
*) echo "usage: $0 preflight|up|down" >&2; exit 2 ;;
esac
