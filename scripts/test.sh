#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then runs them.
# Usage: scripts/test.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on PATH: install the Rust toolchain (rustup) first." >&2
  exit 1
fi
# The ledger core needs nothing beyond the Rust toolchain: SQLite is compiled in (rusqlite,
# bundled). Later layers (NATS, the browser dashboard) add their installs here.
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
