# shellcheck shell=bash
# shellcheck disable=SC2154 # cache, key, dest, cache_var, gomod, here, tmp: set by the sourcing script
# The cache protocol hack/k8s-binaries.sh and hack/helm-binary.sh share,
# sourced by both. The caller sets `cache` (the cache root), `key` (the
# versions), `dest` ($cache/$key), `cache_var` (the environment variable that
# moves the cache root) and `gomod` (a go.mod naming the Go version needed),
# and defines `log`, `die` and `complete DIR` (0 when DIR holds working
# binaries of the expected versions).
#
# cached_begin WHAT   print $dest/bin and exit 0 when it is complete;
#                     otherwise check for go and a writable cache, take the
#                     per-key lock (a second caller waits, then finds the
#                     build done), and pin the Go toolchain settings
# cached_tmp          a fresh $tmp (with $tmp/bin), removed on exit; a
#                     signal also stops the running build
# go_build MODULE_DIR OUTPUT PACKAGE [LDFLAGS]
#                     `go build` in hack/MODULE_DIR into $tmp/bin/OUTPUT
# cached_publish      move $tmp to $dest with one rename (an interrupted build
#                     never looks complete) and print $dest/bin

cached_begin() {
  if complete "$dest/bin"; then
    log "cached: $dest/bin ($1)"
    echo "$dest/bin"
    exit 0
  fi
  command -v go >/dev/null || die "no 'go' on PATH; Go >= $(sed -n 's/^go //p' "$gomod") is needed to build $1"
  { mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; } ||
    die "cannot write the cache directory $cache; set $cache_var to a writable directory"
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
  # Pinned toolchain and no cgo: static binaries from exactly go.mod + go.sum
  # (-mod=readonly: a missing go.sum line is an error, never a silent update).
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
}

cached_tmp() {
  # Leftovers of interrupted builds (we hold the lock, so none is in progress).
  rm -rf "$cache/.$key."*
  tmp=$(mktemp -d "$cache/.$key.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # On a signal: stop the running `go build` too, and remove the temp dir (EXIT).
  bpid=
  trap '[ -z "$bpid" ] || kill -TERM "$bpid" 2>/dev/null; exit 130' INT TERM HUP
  mkdir "$tmp/bin"
}

# shellcheck disable=SC2086 # NFTPOL_K8S_TIMER is a command line
go_build() {
  local t0=$SECONDS
  log "building $2 ($3) ..."
  # In the background, so that a signal is handled at once (wait returns).
  (cd "$here/$1" && exec ${NFTPOL_K8S_TIMER:-} go build -trimpath -ldflags "${4:-}" -o "$tmp/bin/$2" "$3") 9>&- &
  bpid=$!
  wait "$bpid" || die "go build of $3 failed (see above)"
  bpid=
  log "built $2 in $((SECONDS - t0)) s ($(du -h "$tmp/bin/$2" | cut -f1))"
}

cached_publish() {
  if [ -e "$dest" ]; then
    local old="$cache/.$key.old.$$"
    mv -T "$dest" "$old"
    rm -rf "$old"
  fi
  chmod 755 "$tmp"
  mv -T "$tmp" "$dest"
  trap - EXIT
  echo "$dest/bin"
}
