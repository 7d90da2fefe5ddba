#!/usr/bin/env bash
# Build (once) every control-plane binary of the local stack from the Go module proxy.
#
# Why: no registry ships kube-apiserver/etcd/kwok for these machines, and there is no Docker.
# Binaries are cached by version under ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/bin/<name>-<version>/<name>
# and never rebuilt. Each build writes to a temp file and renames it (atomic), then records its
# wall time in <dir>/build-seconds (the orchestrator copies it into .stack/timings.json).
#
# Usage: e2e/stack/build.sh [name...]   (names: etcd kwok kube-apiserver kube-controller-manager
#                                        kube-scheduler kubectl; default: all, one at a time)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
BIN="$CACHE/bin"
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--mod=mod}" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

die() { echo "build.sh: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing (install Go >= 1.24 into /usr/local/go or PATH)"
proxy="$(go env GOPROXY)"
if [[ "$proxy" == "off" ]]; then die "GOPROXY=off: the Go module proxy is needed to build the stack"; fi

# The wrapper modules must pin the same versions as versions.env.
grep -q "k8s.io/kubernetes $KUBERNETES_VERSION" "$HERE/gomod/kubernetes/go.mod" \
  || die "gomod/kubernetes/go.mod does not require k8s.io/kubernetes $KUBERNETES_VERSION"
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$HERE/gomod/etcd/go.mod" \
  || die "gomod/etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION"

minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$KUBERNETES_VERSION" ;;
    *) die "unknown binary: $1" ;;
  esac
}

# build_one NAME: build NAME into its cache dir unless it is already there.
build_one() {
  local name="$1" version dir out tmp start
  version="$(version_of "$name")"
  dir="$BIN/$name-$version"; out="$dir/$name"
  if [[ -x "$out" ]]; then echo "cached: $out"; return 0; fi
  mkdir -p "$dir"; tmp="$(mktemp "$dir/.$name.XXXXXX")"
  start="$(date +%s)"
  echo "building $name $version (this takes minutes the first time) ..."
  trap 'rm -rf "$tmp" "$dir"/.gobin.*; echo "build.sh: building $name failed (Go module proxy $proxy reachable?)" >&2' ERR
  case "$name" in
    etcd)
      (cd "$HERE/gomod/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp" go.etcd.io/etcd/server/v3) ;;
    kwok)
      local gobin; gobin="$(mktemp -d "$dir/.gobin.XXXXXX")"
      GOFLAGS= GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
      mv -f "$gobin/kwok" "$tmp"; rmdir "$gobin" ;;
    *)
      (cd "$HERE/gomod/kubernetes" && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$tmp" "k8s.io/kubernetes/cmd/$name") ;;
  esac
  trap - ERR
  chmod 0755 "$tmp"; mv -f "$tmp" "$out"
  echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
  echo "built $out in $(cat "$dir/build-seconds") s"
}

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  names=(etcd kwok kube-apiserver kube-controller-manager kube-scheduler kubectl)
fi
for n in "${names[@]}"; do build_one "$n"; done
