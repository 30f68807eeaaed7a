#!/usr/bin/env bash
# The service benchmark of docs/performance.md: kmsd against OpenBao's
# Transit, measured in one run so the ratios are fair on a shared machine.
#
#   scripts/bench.sh                   full run, about 8 minutes after the build
#   scripts/bench.sh --quick           smoke run, about 2 minutes after the build
#   scripts/bench.sh --json out.json   also save the raw results
#   scripts/bench.sh --help            every option (scripts/bench.py)
#
# This part builds what is measured and installs OpenBao; scripts/bench.py
# starts the servers (on loopback, in a temporary directory, on ports it
# picks), measures, prints the table, and stops every process it started
# however it ends: try/finally and signal handlers in bench.py, and
# PR_SET_PDEATHSIG on each server and client in case bench.py is killed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

for arg in "$@"; do
  if [[ $arg == -h || $arg == --help ]]; then
    exec python3 "$root/scripts/bench.py" --help
  fi
done

step() { printf '==> %s\n' "$*" >&2; }

step "cargo build --release -p kmsd --bin kmsd --example grpc_floor --example local_scale"
# grpc_floor: the bare tonic baseline the server-CPU and tail figures are
# compared with (kmsd/examples/grpc_floor.rs).
cargo build --release -p kmsd --bin kmsd --example grpc_floor --example local_scale --manifest-path "$root/Cargo.toml"
# Built now, so that no compiler runs while load is measured.
step "cargo bench -p kms-client --bench stream --no-run"
cargo bench -p kms-client --bench stream --no-run --quiet --manifest-path "$root/Cargo.toml"
step "cargo bench -p kmsd-tests --bench cluster --no-run"
# The 3-node OpenBao cluster cells (tests/benches/cluster.rs); it runs the
# release kmsd built above.
cargo bench -p kmsd-tests --bench cluster --no-run --quiet --manifest-path "$root/Cargo.toml"

step "OpenBao"
bao="$("$root/scripts/ensure-openbao.sh")"
"$bao" version >&2

if ! command -v h2load >/dev/null 2>&1; then
  step "h2load is not installed (scripts/setup-test-env.sh installs it); its rows will read n/a"
fi

exec python3 "$root/scripts/bench.py" \
  --kmsd "${CARGO_TARGET_DIR:-$root/target}/release/kmsd" \
  --floor "${CARGO_TARGET_DIR:-$root/target}/release/examples/grpc_floor" --bao "$bao" "$@"
