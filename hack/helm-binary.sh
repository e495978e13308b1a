#!/usr/bin/env bash
# Builds the real `helm` (helm.sh/helm/v4 HELM_VERSION, from the Go module
# proxy) through the wrapper module hack/helmbin (go.mod + go.sum committed;
# the version is in hack/k8s-versions.env) into a cache outside the
# repository:
#
#   ${NFTPOL_HELM_CACHE:-/var/cache/nftpol/helm}/helm-<HELM_VERSION>/bin/helm
#
# Only `go build helm.sh/helm/v4/cmd/helm`, nothing else of helm's Makefile.
# Skips the build when the binary is there and reports the expected version.
# The last line on stdout is that bin directory:
#
#   HELM=$(hack/helm-binary.sh | tail -1)/helm
#
# Everything else goes to stderr. Same conventions as hack/k8s-binaries.sh
# (lock per cache key, publish with one rename, a signal stops the build);
# a cold build's figures are in docs/testing.md.
#
# Environment:
#   NFTPOL_HELM_CACHE  cache root (default /var/cache/nftpol/helm)
#   NFTPOL_K8S_TIMER   optional command prefixed to `go build`, e.g.
#                      "/usr/bin/time -v" to measure time and peak RSS
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/k8s-versions.env"

log() { echo "helm-binary: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache=${NFTPOL_HELM_CACHE:-/var/cache/nftpol/helm}
key="helm-$HELM_VERSION"
dest="$cache/$key"

# 0 when DIR/helm runs and reports HELM_VERSION.
complete() {
  local dir=$1 out
  [ -x "$dir/helm" ] || return 1
  out=$("$dir/helm" version --template '{{.Version}}' 2>&1) || return 1
  [ "$out" = "$HELM_VERSION" ] || { log "$dir/helm version: $out"; return 1; }
}

if complete "$dest/bin"; then
  log "cached: $dest/bin (helm $HELM_VERSION)"
  echo "$dest/bin"
  exit 0
fi

command -v go >/dev/null || die "no 'go' on PATH; Go >= $(sed -n 's/^go //p' "$here/helmbin/go.mod") is needed to build helm"
{ mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; } ||
  die "cannot write the cache directory $cache; set NFTPOL_HELM_CACHE to a writable directory"

# One build at a time per cache: a second caller waits, then finds it done.
exec 9>"$cache/$key.lock"
if ! flock -n 9; then
  log "another build of $key is running; waiting for it (lock $cache/$key.lock)"
  flock 9
fi
if complete "$dest/bin"; then
  log "cached (built meanwhile): $dest/bin"
  echo "$dest/bin"
  exit 0
fi

# Pinned toolchain and no cgo: a static binary from exactly go.mod + go.sum
# (-mod=readonly: a missing go.sum line is an error, never a silent update).
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
grep -q "^	helm.sh/helm/v4 $HELM_VERSION\( \|$\)" "$here/helmbin/go.mod" ||
  grep -q "^require helm.sh/helm/v4 $HELM_VERSION$" "$here/helmbin/go.mod" ||
  die "hack/helmbin/go.mod does not require helm.sh/helm/v4 $HELM_VERSION; run hack/k8s-gomod.sh helm"

# Leftovers of interrupted builds (we hold the lock, so none is in progress).
rm -rf "$cache/.$key."*
tmp=$(mktemp -d "$cache/.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bpid=
trap '[ -z "$bpid" ] || kill -TERM "$bpid" 2>/dev/null; exit 130' INT TERM HUP
mkdir "$tmp/bin"

# Version stamps as helm's Makefile sets them for a tagged release (version,
# empty metadata). The module zip carries no git commit, so gitCommit stays
# empty and the tree state is "archive", as in hack/k8s-binaries.sh.
v=helm.sh/helm/v4/internal/version
ldflags="-s -w -X $v.version=$HELM_VERSION -X $v.metadata= -X $v.gitTreeState=archive"

log "building into $dest (a cold build took about 3 min on 2 shared cores; see docs/testing.md)"
t0=$SECONDS
# shellcheck disable=SC2086 # NFTPOL_K8S_TIMER is a command line
(cd "$here/helmbin" && exec ${NFTPOL_K8S_TIMER:-} go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/helm" helm.sh/helm/v4/cmd/helm) 9>&- &
bpid=$!
wait "$bpid" || die "go build of helm.sh/helm/v4/cmd/helm failed (see above)"
bpid=
log "built helm in $((SECONDS - t0)) s ($(du -h "$tmp/bin/helm" | cut -f1))"
complete "$tmp/bin" || die "the helm just built does not report $HELM_VERSION"

# Publish with one rename: an interrupted build never looks complete.
if [ -e "$dest" ]; then
  old="$cache/.$key.old.$$"
  mv -T "$dest" "$old"
  rm -rf "$old"
fi
chmod 755 "$tmp"
mv -T "$tmp" "$dest"
trap - EXIT
log "done in $((SECONDS - t0)) s: $dest/bin"
echo "$dest/bin"
