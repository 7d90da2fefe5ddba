#!/usr/bin/env bash
# Build (once) the Argo Rollouts controller from the Go module proxy, pinned by ARGO_ROLLOUTS_VERSION
# in versions.env, for the side-by-side benchmark in bench/peers/argo_rollouts.py.
#
# Why this way: argo-rollouts' go.mod has replace directives, so `go install ...@version` refuses;
# the module is downloaded, copied to a writable temp directory and built there with -mod=mod. Its
# go.mod needs a newer Go than the stack's toolchain, so GOTOOLCHAIN=ARGO_ROLLOUTS_GOTOOLCHAIN is allowed
# for this build only (the stack keeps GOTOOLCHAIN=local). Cache layout as build.sh:
# ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/bin/argo-rollouts-<version>/{rollouts-controller,crds/,
# build-seconds}; never rebuilt once there; the binary is written to a temp file and renamed (atomic).
#
# Usage: e2e/stack/build-argo-rollouts.sh     (prints the binary's path on its last line)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export CGO_ENABLED=0

die() { echo "build-argo-rollouts.sh: $*" >&2; exit 1; }

[[ -n "${ARGO_ROLLOUTS_VERSION:-}" ]] || die "ARGO_ROLLOUTS_VERSION is not set in $HERE/versions.env"
[[ -n "${ARGO_ROLLOUTS_GOTOOLCHAIN:-}" ]] || die "ARGO_ROLLOUTS_GOTOOLCHAIN is not set in $HERE/versions.env"
module="github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION"
dir="$CACHE/bin/argo-rollouts-$ARGO_ROLLOUTS_VERSION"; out="$dir/rollouts-controller"
if [[ -x "$out" && -d "$dir/crds" ]]; then echo "cached: $out"; echo "$out"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing (install Go into /usr/local/go or PATH)"
proxy="$(go env GOPROXY)"
[[ "$proxy" != "off" ]] || die "GOPROXY=off: the Go module proxy is needed to build argo-rollouts"
export GOTOOLCHAIN="$ARGO_ROLLOUTS_GOTOOLCHAIN"

echo "downloading $module (toolchain $GOTOOLCHAIN) ..."
src="$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" \
  || die "cannot fetch $module from the Go module proxy ($proxy)"
[[ -d "$src" ]] || die "cannot fetch $module from the Go module proxy ($proxy)"

mkdir -p "$dir"
work="$(mktemp -d "$dir/.src.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"; chmod -R u+w "$work"

start="$(date +%s)"
echo "building ./cmd/rollouts-controller in $work (6-12 minutes on 2 cores) ..."
tmp="$(mktemp "$dir/.rollouts-controller.XXXXXX")"
(cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$tmp" ./cmd/rollouts-controller) \
  || { rm -f "$tmp"; die "go build of $module failed"; }
chmod 0755 "$tmp"

echo "copying the CRDs from manifests/crds/ ..."
crds="$(mktemp -d "$dir/.crds.XXXXXX")"
for f in "$work"/manifests/crds/*.yaml; do
  [[ "$(basename "$f")" == "kustomization.yaml" ]] || cp "$f" "$crds/"
done
rm -rf "$dir/crds"; mv "$crds" "$dir/crds"; chmod 0755 "$dir/crds"
mv -f "$tmp" "$out"
echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
echo "built $out ($(du -m "$out" | cut -f1) MiB) in $(cat "$dir/build-seconds") s; CRDs: $(ls "$dir/crds" | tr '\n' ' ')"
echo "$out"
