#!/usr/bin/env bash
# Runs a command with an AWS emulator and says which one the AWS tests use:
# - the one AWS_ENDPOINT_URL names (a LocalStack you run, a moto server CI started);
# - else, where a Docker engine answers (and AWS_EMULATOR is not `moto`): LocalStack started
#   through testcontainers (`sandbox --features localstack --bin aws-emulator`);
# - else moto's server on 127.0.0.1 (installed into .venv on first use).
# An emulator started here is stopped when the command ends.
set -euo pipefail
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export REQUIRE_AWS_EMULATOR=1
say() { echo "== AWS tests run against: $1" >&2; }
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  say "${AWS_EMULATOR_NAME:-the emulator at $AWS_ENDPOINT_URL}"
  exec "$@"
fi
if [ "${AWS_EMULATOR:-auto}" != moto ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ${CARGO:-cargo} build -q -p sandbox --features localstack --bin aws-emulator --locked
  fifo=$(mktemp -u); mkfifo "$fifo"
  # The emulator runs until its stdin (this shell's fd 9) closes.
  exec 9> >(target/debug/aws-emulator > "$fifo")
  read -r line < "$fifo"; rm -f "$fifo"
  export "${line?}"
  trap 'exec 9>&-' EXIT
  say "LocalStack (testcontainers) at $AWS_ENDPOINT_URL"
  "$@"
  exit $?
fi
venv="${VENV:-.venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing moto into $venv (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]==5.2.5'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="${TMPDIR:-/tmp}/moto-$port.log"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("moto did not start")
PY
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
say "moto (server on 127.0.0.1:$port)"
"$@"
