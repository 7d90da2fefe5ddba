#!/usr/bin/env bash
# Build (once) Traefik, the stack's Gateway API implementation, from the Go module proxy, pinned by
# TRAEFIK_VERSION in versions.env.
#
# Why a wrapper module: traefik/v3's go.mod carries replace and exclude lines, so `go install ...@version`
# refuses it. e2e/stack/dataplane/gomod/traefik is upstream's go.mod with only the module line changed (so
# upstream's versions, replaces and excludes apply) plus a tools.go that imports cmd/traefik. Same cache layout
# as build.sh: ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/bin/traefik-<version>/traefik, never rebuilt once
# there, written to a temp file and renamed (atomic), wall time recorded in <dir>/build-seconds.
#
# Usage: e2e/stack/build-traefik.sh        (prints the binary's path on its last line)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

die() { echo "build-traefik.sh: $*" >&2; exit 1; }

[[ -n "${TRAEFIK_VERSION:-}" ]] || die "TRAEFIK_VERSION is not set in $HERE/versions.env"
module_dir="$HERE/dataplane/gomod/traefik"
grep -q "github.com/traefik/traefik/v3 $TRAEFIK_VERSION" "$module_dir/go.mod" \
  || die "$module_dir/go.mod does not require traefik $TRAEFIK_VERSION (regenerate it from upstream's go.mod)"
dir="$CACHE/bin/traefik-$TRAEFIK_VERSION"; out="$dir/traefik"
if [[ -x "$out" ]]; then echo "cached: $out"; echo "$out"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing (install Go into /usr/local/go or PATH)"
proxy="$(go env GOPROXY)"
[[ "$proxy" != "off" ]] || die "GOPROXY=off: the Go module proxy is needed to build traefik"

mkdir -p "$dir"
tmp="$(mktemp "$dir/.traefik.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
start="$(date +%s)"
echo "building traefik $TRAEFIK_VERSION (15-22 minutes on 2 cores the first time) ..."
(cd "$module_dir" && GOFLAGS=-mod=mod go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
  -o "$tmp" github.com/traefik/traefik/v3/cmd/traefik) || die "go build of traefik $TRAEFIK_VERSION failed"
chmod 0755 "$tmp"; mv -f "$tmp" "$out"
echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
echo "built $out ($(du -m "$out" | cut -f1) MiB) in $(cat "$dir/build-seconds") s"
echo "$out"
