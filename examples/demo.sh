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

speed=20
# shellcheck source=start-sandbox.sh
source ./start-sandbox.sh
head -n 3 .sandbox.log

echo; echo "\$ reconciler validate";            "${cli[@]}" validate
echo; echo "\$ reconciler plan";                "${cli[@]}" plan
echo; echo "\$ reconciler apply --auto-approve --wait=60"
status=0; "${cli[@]}" apply --auto-approve --wait=60 || status=$?
echo; echo "\$ reconciler show --state";        "${cli[@]}" show --state
echo; echo "\$ reconciler plan --detailed-exitcode"
"${cli[@]}" plan --detailed-exitcode || true
exit "$status"
