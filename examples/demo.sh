#!/usr/bin/env bash
# The whole demo on this machine: start the sandbox, validate, plan and apply examples/, show the outcomes.
# Run from the repository root after installing (see README). SANDBOX_PORT chooses the sandbox's port (8080).
# Leaves the sandbox stopped and the state in examples/.reconciler/ (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")"
read -r -a cli <<< "${RECONCILER:-reconciler}"   # e.g. RECONCILER="python -m reconciler"
port=${SANDBOX_PORT:-8080}

export FLEET_API_CLIENT_ID=sandbox-client FLEET_API_USERNAME=sandbox FLEET_API_PASSWORD=sandbox-password
export WEBHOOK_AUTH="Basic ZGVtbzpkZW1v"   # what the sandbox sends to the webhook; any value works here
export RECONCILER_API_URL="http://127.0.0.1:${port}/connectedcar/v3"

"${cli[@]}" sandbox --listen "127.0.0.1:${port}" --speed 20 > .sandbox.log 2>&1 &
sandbox=$!
trap 'kill "$sandbox" 2>/dev/null || true' EXIT
# wait until it serves; stop at once if it exited (port busy, bad port), and give up after 15 seconds
started=""
for _ in $(seq 150); do
  if grep -q "Sandbox Fleet API" .sandbox.log 2>/dev/null; then started=yes; break; fi
  kill -0 "$sandbox" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$started" ]; then
  echo "demo.sh: the sandbox did not start on 127.0.0.1:${port}; its output:" >&2
  sed 's/^/  /' .sandbox.log >&2
  echo "demo.sh: pick a free port with SANDBOX_PORT=PORT (default 8080)." >&2
  exit 1
fi
head -n 3 .sandbox.log

echo; echo "\$ reconciler validate";            "${cli[@]}" validate
echo; echo "\$ reconciler plan";                "${cli[@]}" plan
echo; echo "\$ reconciler apply --auto-approve --wait=60"
status=0; "${cli[@]}" apply --auto-approve --wait=60 || status=$?
echo; echo "\$ reconciler show --state";        "${cli[@]}" show --state
echo; echo "\$ reconciler plan --detailed-exitcode"
"${cli[@]}" plan --detailed-exitcode || true
exit "$status"
