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
# No test may be skipped: an ignored test fails the run.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
if grep -E '^test result: .* [1-9][0-9]* ignored' "$log" >/dev/null; then
  echo "error: some tests are marked #[ignore]; every test must run" >&2
  grep -E ' \.\.\. ignored$' "$log" >&2 || true
  exit 1
fi

step "independent checks of the documented test vectors"
for vector in tests/vectors/*.py; do
  python3 "$vector"
done

step "all tests passed"
