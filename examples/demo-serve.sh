#!/usr/bin/env bash
# The controller on this machine: the sandbox, then `reconciler serve` on examples/. Open
# http://127.0.0.1:8081/ to watch the fleet converge (the page refreshes itself); edit a manifest and the next run
# (every 30 s) applies it. Ctrl-C or SIGTERM stops serve (its run in progress finishes and saves), then the sandbox.
# Run from the repository root after installing (see README). SANDBOX_PORT chooses the sandbox's port (8080),
# SERVE_PORT serve's (8081: the port the examples' callback notifies), INTERVAL the time between runs (30s).
# Each start is a fresh sandbox, so the state an earlier demo left in examples/.reconciler/ describes vehicles that
# no longer exist: it is removed first (the demo starts over), and left in place at the end.
set -euo pipefail
cd "$(dirname "$0")"
read -r -a cli <<< "${RECONCILER:-reconciler}"   # e.g. RECONCILER="python -m reconciler"
port=${SANDBOX_PORT:-8080}
serve_port=${SERVE_PORT:-8081}

export FLEET_API_CLIENT_ID=sandbox-client FLEET_API_USERNAME=sandbox FLEET_API_PASSWORD=sandbox-password
export WEBHOOK_AUTH="Basic ZGVtbzpkZW1v"   # what the sandbox sends to the webhook; any value works here
export RECONCILER_API_URL="http://127.0.0.1:${port}/connectedcar/v3"

if [ -e .reconciler ]; then
  echo "demo-serve.sh: a fresh sandbox: removing the state of an earlier demo (examples/.reconciler/)"
  rm -rf .reconciler
fi
"${cli[@]}" sandbox --listen "127.0.0.1:${port}" --speed "${SANDBOX_SPEED:-10}" > .sandbox.log 2>&1 &
sandbox=$!
stop_sandbox() {  # and wait (up to 10 s) until it is gone, so its port is free when the script ends
  kill "$sandbox" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$sandbox" 2>/dev/null || return 0; sleep 0.1; done
}
trap stop_sandbox EXIT
# wait until it serves; stop at once if it exited (port busy, bad port), and give up after 15 seconds
started=""
for _ in $(seq 150); do
  if grep -q "Sandbox Fleet API" .sandbox.log 2>/dev/null; then started=yes; break; fi
  kill -0 "$sandbox" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$started" ]; then
  echo "demo-serve.sh: the sandbox did not start on 127.0.0.1:${port}; its output:" >&2
  sed 's/^/  /' .sandbox.log >&2
  echo "demo-serve.sh: pick a free port with SANDBOX_PORT=PORT (default 8080)." >&2
  exit 1
fi

echo "Status page: http://127.0.0.1:${serve_port}/ (Ctrl-C stops)"
"${cli[@]}" serve --listen "127.0.0.1:${serve_port}" --interval "${INTERVAL:-30s}" &
serve=$!
trap 'kill -TERM "$serve" 2>/dev/null || true' TERM INT
status=0
wait "$serve" || status=$?
if [ "$status" -gt 128 ]; then
  # a signal ends the wait, not serve (which finishes its run and saves): serve's own exit status is the script's
  status=0
  wait "$serve" || status=$?
fi
exit "$status"
