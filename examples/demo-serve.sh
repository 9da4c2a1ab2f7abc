#!/usr/bin/env bash
# The controller on this machine: the sandbox, then `reconciler serve` on examples/. Open
# http://127.0.0.1:8081/ to watch the fleet converge (the page refreshes itself); edit a manifest and the next run
# (every 30 s) applies it. Ctrl-C or SIGTERM stops serve (its run in progress finishes and saves), then the sandbox.
# Run from the repository root after installing (see README). SANDBOX_PORT chooses the sandbox's port (8080),
# SERVE_PORT serve's (8081: the port the examples' callback notifies; another port needs its target changed too),
# INTERVAL the time between runs (30s).
# Each start is a fresh sandbox, so the state an earlier demo left in examples/.reconciler/ describes vehicles that
# no longer exist: it is removed once the sandbox serves (the demo starts over), and left in place at the end.
set -euo pipefail
cd "$(dirname "$0")"
read -r -a cli <<< "${RECONCILER:-reconciler}"   # e.g. RECONCILER="python -m reconciler"
port=${SANDBOX_PORT:-8080}
serve_port=${SERVE_PORT:-8081}

export FLEET_API_CLIENT_ID=sandbox-client FLEET_API_USERNAME=sandbox FLEET_API_PASSWORD=sandbox-password
export WEBHOOK_AUTH="Basic ZGVtbzpkZW1v"   # what the sandbox sends to the webhook; any value works here
export RECONCILER_API_URL="http://127.0.0.1:${port}/connectedcar/v3"

speed=${SANDBOX_SPEED:-10}
# shellcheck source=start-sandbox.sh
source ./start-sandbox.sh

if [ -e .reconciler ]; then
  echo "demo-serve.sh: a fresh sandbox: removing the state of an earlier demo (examples/.reconciler/)"
  rm -rf .reconciler
fi
if ! grep -q "127.0.0.1:${serve_port}/" manifests/*.yaml; then
  echo "demo-serve.sh: warning: no callback in manifests/ notifies 127.0.0.1:${serve_port}, so the outcomes will" \
    "not reach serve: set the callback's target to that port, or leave SERVE_PORT at 8081" >&2
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
