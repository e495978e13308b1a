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

cache_var=NFTPOL_HELM_CACHE
gomod="$here/helmbin/go.mod"
# shellcheck source-path=SCRIPTDIR
source "$here/cached-build.sh"
cached_begin "helm $HELM_VERSION"

grep -q "^	helm.sh/helm/v4 $HELM_VERSION\( \|$\)" "$here/helmbin/go.mod" ||
  grep -q "^require helm.sh/helm/v4 $HELM_VERSION$" "$here/helmbin/go.mod" ||
  die "hack/helmbin/go.mod does not require helm.sh/helm/v4 $HELM_VERSION; run hack/k8s-gomod.sh helm"

cached_tmp

# Version stamps as helm's Makefile sets them for a tagged release (version,
# empty metadata). The module zip carries no git commit, so gitCommit stays
# empty and the tree state is "archive", as in hack/k8s-binaries.sh.
v=helm.sh/helm/v4/internal/version
ldflags="-s -w -X $v.version=$HELM_VERSION -X $v.metadata= -X $v.gitTreeState=archive"

log "building into $dest (a cold build took about 3 min on 2 shared cores; see docs/testing.md)"
t0=$SECONDS
go_build helmbin helm helm.sh/helm/v4/cmd/helm "$ldflags"
complete "$tmp/bin" || die "the helm just built does not report $HELM_VERSION"

log "done in $((SECONDS - t0)) s: $dest/bin"
cached_publish
