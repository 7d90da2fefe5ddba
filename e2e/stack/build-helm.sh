#!/usr/bin/env bash
# Build (once) the helm CLI from the Go module proxy, pinned by HELM_VERSION in versions.env.
#
# Why: no registry we can reach ships a helm binary for these machines. helm.sh/helm/v3's go.mod
# has no replace directives, so `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION` works without a
# wrapper module. Same cache layout as build.sh: ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/bin/
# helm-<version>/helm, never rebuilt once there, written to a temp file and renamed (atomic), wall
# time recorded in <dir>/build-seconds. The ldflags mirror helm's own Makefile so that
# `helm version` and the Kubernetes version helm lint/template assume are the real ones.
#
# Usage: e2e/stack/build-helm.sh        (prints the binary's path on its last line)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

die() { echo "build-helm.sh: $*" >&2; exit 1; }

[[ -n "${HELM_VERSION:-}" ]] || die "HELM_VERSION is not set in $HERE/versions.env"
dir="$CACHE/bin/helm-$HELM_VERSION"; out="$dir/helm"
if [[ -x "$out" ]]; then echo "cached: $out"; echo "$out"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing (install the Go release helm $HELM_VERSION's go.mod names, 1.26 for v3.22, into /usr/local/go or PATH)"
proxy="$(go env GOPROXY)"
[[ "$proxy" != "off" ]] || die "GOPROXY=off: the Go module proxy is needed to build helm"

# The Kubernetes version helm assumes (Capabilities.KubeVersion, deprecation lint) comes from the
# client-go it is built with: v0.X.Y -> 1.X, as in helm's Makefile.
gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" 2>/dev/null \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" \
  || die "cannot fetch helm.sh/helm/v3@$HELM_VERSION from the Go module proxy ($proxy)"
[[ -f "$gomod" ]] || die "cannot fetch helm.sh/helm/v3@$HELM_VERSION from the Go module proxy ($proxy)"
client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")"
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
[[ -n "$k8s_minor" ]] || die "cannot read the k8s.io/client-go version from $gomod"

pkg=helm.sh/helm/v3
LDFLAGS="-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean \
-X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
-X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$k8s_minor"

mkdir -p "$dir"
gobin="$(mktemp -d "$dir/.gobin.XXXXXX")"
trap 'rm -rf "$gobin"' EXIT
start="$(date +%s)"
echo "building helm $HELM_VERSION (client-go $client_go; this takes minutes the first time) ..."
GOFLAGS= GOBIN="$gobin" go install -trimpath -ldflags "$LDFLAGS" "$pkg/cmd/helm@$HELM_VERSION"
tmp="$(mktemp "$dir/.helm.XXXXXX")"
mv -f "$gobin/helm" "$tmp"; chmod 0755 "$tmp"; mv -f "$tmp" "$out"
echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
echo "built $out in $(cat "$dir/build-seconds") s"
echo "$out"
