#!/usr/bin/env bash
# Runs every test of the repository: formatting, lints, unit tests, the
# end-to-end suites against real processes, and the independent format
# checks. Installs what the tests need (see scripts/setup-test-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test environment"
scripts/setup-test-env.sh
export PATH="$PWD/.venv/bin:$PATH"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build the binaries the end-to-end tests start"
cargo build --workspace --all-targets --quiet

step "cargo test"
cargo test --workspace

step "independent checks of the documented test vectors"
for vector in tests/vectors/*.py; do
  python3 "$vector"
done

step "all tests passed"
