#!/usr/bin/env bash
# Installs the Debian packages the local stack needs, only when missing (a fresh CI machine has none of them).
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v pkill >/dev/null 2>&1 || need+=(procps)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the dashboard's browser tests (Playwright drives it)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]} (apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  progress="$(dirname "${BASH_SOURCE[0]}")/progress.py"
  python3 "$progress" apt-update "apt-get update" -- apt-get update
  python3 "$progress" system-packages "system packages: ${need[*]}" -- \
    apt-get install -y --no-install-recommends "${need[@]}"
  # Debian's prometheus package may start a system service on :9090; the stack runs its own instance.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true; fi
  pkill -x prometheus-node-exporter 2>/dev/null || true
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: the Go toolchain is required to build the control plane (kube-apiserver, etcd, kwok); install Go >= 1.24" >&2
  exit 1
fi
