#!/usr/bin/env bash
# Builds the real kube-apiserver and kubectl (k8s.io/kubernetes K8S_VERSION) and
# etcd (go.etcd.io/etcd/server/v3 ETCD_VERSION) from the Go module proxy, through
# the wrapper modules hack/k8sbin and hack/etcdbin (go.mod + go.sum committed;
# versions in hack/k8s-versions.env), into a cache outside the repository:
#
#   ${NFTPOL_K8S_CACHE:-/var/cache/nftpol/k8s}/k8s-<K8S_VERSION>-etcd-<ETCD_VERSION>/bin/
#
# Skips the build when the three binaries are there and report the expected
# versions. The last line on stdout is that bin directory:
#
#   BIN=$(hack/k8s-binaries.sh | tail -1)
#
# Everything else goes to stderr. A cold build takes minutes (figures in
# docs/testing.md); the Go build and module caches (GOCACHE, GOMODCACHE) are
# used as usual, so a rebuild after deleting the binaries is much faster.
#
# Environment:
#   NFTPOL_K8S_CACHE   cache root (default /var/cache/nftpol/k8s)
#   NFTPOL_K8S_TIMER   optional command prefixed to each `go build`, e.g.
#                      "/usr/bin/time -v" to measure time and peak RSS
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/k8s-versions.env"

log() { echo "k8s-binaries: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache=${NFTPOL_K8S_CACHE:-/var/cache/nftpol/k8s}
key="k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
dest="$cache/$key"

# 0 when DIR holds the three binaries and each runs and reports its version.
complete() {
  local dir=$1 out
  for b in kube-apiserver kubectl etcd; do
    [ -x "$dir/$b" ] || return 1
  done
  out=$("$dir/kube-apiserver" --version 2>&1) || return 1
  [ "$out" = "Kubernetes $K8S_VERSION" ] || { log "$dir/kube-apiserver --version: $out"; return 1; }
  out=$("$dir/kubectl" version --client 2>&1) || return 1
  case "$out" in "Client Version: $K8S_VERSION"*) ;; *) log "$dir/kubectl version --client: $out"; return 1 ;; esac
  out=$("$dir/etcd" --version 2>&1) || return 1
  case "$out" in "etcd Version: ${ETCD_VERSION#v}"*) ;; *) log "$dir/etcd --version: $out"; return 1 ;; esac
}

cache_var=NFTPOL_K8S_CACHE
gomod="$here/k8sbin/go.mod"
# shellcheck source-path=SCRIPTDIR
source "$here/cached-build.sh"
cached_begin "kube-apiserver and kubectl $K8S_VERSION, etcd $ETCD_VERSION"

grep -q "^	k8s.io/kubernetes $K8S_VERSION\( \|$\)" "$here/k8sbin/go.mod" ||
  die "hack/k8sbin/go.mod does not require k8s.io/kubernetes $K8S_VERSION; run hack/k8s-gomod.sh"
grep -q "^	go.etcd.io/etcd/server/v3 $ETCD_VERSION\( \|$\)" "$here/etcdbin/go.mod" ||
  die "hack/etcdbin/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION; run hack/k8s-gomod.sh"

cached_tmp

# Version stamps, as upstream's hack/lib/version.sh sets them. buildDate is the
# module's publication time, so two builds of the same version are identical.
major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
build_date=$(cd "$here/k8sbin" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$build_date"
done

log "building into $dest (a cold build took 11 min on 2 shared cores, peak RSS 2.4 GB; see docs/testing.md)"
t0=$SECONDS
go_build k8sbin kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
go_build k8sbin kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"
go_build etcdbin etcd go.etcd.io/etcd/server/v3 "-s -w"
complete "$tmp/bin" || die "the binaries just built do not report the expected versions"

log "done in $((SECONDS - t0)) s: $dest/bin"
cached_publish
