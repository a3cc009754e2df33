# Shared by the make targets: the tool venv and the local DynamoDB-compatible server (moto).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

# Installs the Python tools on first use (and again when requirements-dev.txt changes).
ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$ROOT/requirements-dev.txt" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "==> installing tools into .venv (first use only)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
  echo "$want" > "$stamp"
}

# Debian's Chromium and its WebDriver, for the console's browser tests (tests/tests/suite/console.rs);
# installed on first use. A test tool's own browser download does not work on this network.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  echo "==> installing chromium and chromium-driver (first use only)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
}

# axe-core (npm), injected into the console's pages by tests/tests/suite/console.rs; installed on first
# use into the git-ignored .tools/axe.
ensure_axe() {
  if [ -f "$ROOT/.tools/axe/node_modules/axe-core/axe.min.js" ]; then
    return 0
  fi
  echo "==> installing axe-core from npm into .tools/axe (first use only)"
  mkdir -p "$ROOT/.tools/axe"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools/axe" axe-core@4 >/dev/null
}

# A free TCP port on 127.0.0.1.
free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_moto PORT LOGFILE: starts moto in the background, waits until it answers, sets MOTO_PID.
start_moto() {
  local port="$1" log="$2"
  if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/"; then
    echo "error: something already listens on 127.0.0.1:$port (stop it, or pick another port)" >&2
    return 1
  fi
  # moto behind scripts/localdynamo (meter, limits, throttling, conflicts): docs/LOCAL_DYNAMODB.md.
  "$VENV/bin/python" "$(dirname "${BASH_SOURCE[0]}")/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/"; then
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "error: moto_server exited; see $log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "error: moto_server did not answer on port $port; see $log" >&2
  return 1
}

# Environment that points the SDK (Rust and Python) at a local server.
local_aws_env() {
  local port="$1"
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_ENDPOINT_URL_S3="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export AWS_EC2_METADATA_DISABLED=true
  # The local server is slower than DynamoDB (Python): a 25,000-id call takes seconds.
  export DYNAMODB_ATTEMPT_TIMEOUT_MS=30000 DYNAMODB_OPERATION_TIMEOUT_MS=120000
  # Usage sums written every 5 s per instance, as deployed, so that what is measured locally is
  # what AWS bills (docs/DECISIONS.md "Usage at the production setting everywhere but the cargo
  # tests"); DEV_USAGE_FLUSH_SECONDS=0 writes them on every call (the cargo tests).
  export USAGE_FLUSH_SECONDS="${DEV_USAGE_FLUSH_SECONDS:-5}"
}
