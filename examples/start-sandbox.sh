# Sourced by the demo scripts: starts the sandbox on 127.0.0.1:$port at $speed in the background (its output in
# .sandbox.log), stops it when the script exits (waiting up to 10 s, so its port is free afterwards), and exits 1
# saying why when it does not serve within 15 seconds (port busy, bad port).
"${cli[@]}" sandbox --listen "127.0.0.1:${port}" --speed "${speed}" > .sandbox.log 2>&1 &
sandbox=$!
stop_sandbox() {
  kill "$sandbox" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$sandbox" 2>/dev/null || return 0; sleep 0.1; done
}
trap stop_sandbox EXIT
started=""
for _ in $(seq 150); do
  if grep -q "Sandbox Fleet API" .sandbox.log 2>/dev/null; then started=yes; break; fi
  kill -0 "$sandbox" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$started" ]; then
  echo "$(basename "$0"): the sandbox did not start on 127.0.0.1:${port}; its output:" >&2
  sed 's/^/  /' .sandbox.log >&2
  echo "$(basename "$0"): pick a free port with SANDBOX_PORT=PORT (default 8080)." >&2
  exit 1
fi
