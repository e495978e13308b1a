#!/usr/bin/env bash
# A throw-away Kubernetes control plane on loopback, for running nftpol by hand
# against the real API server: etcd + kube-apiserver built by
# hack/k8s-binaries.sh. No controller manager, no scheduler, no kubelet.
#
#   hack/control-plane.sh up DIR     start; writes DIR/admin.kubeconfig (last stdout line)
#   hack/control-plane.sh down DIR   stop what `up` started (pid files) and remove DIR
#   hack/control-plane.sh stop-apiserver DIR    stop only kube-apiserver (etcd keeps running)
#   hack/control-plane.sh start-apiserver DIR   start it again: same flags, port, PKI
#                                               (waits for /readyz, like `up`)
#
# Binaries: $NFTPOL_K8S_BIN, else whatever hack/k8s-binaries.sh prints.
# Everything listens on 127.0.0.1 only, on free ports chosen at start:
#   etcd            http://127.0.0.1:<port>, data in DIR/etcd, --unsafe-no-fsync
#   kube-apiserver  https://127.0.0.1:<port>, TLS with a CA made here (DIR/pki),
#                   client-certificate auth (admin: O=system:masters),
#                   service-account signing keys (TokenRequest works),
#                   --authorization-mode=RBAC, default admission plugins
#                   (PodSecurity included) except ServiceAccount.
# DIR/env holds the URLs and file names (sourceable); logs are DIR/*.log.
# $NFTPOL_APISERVER_ARGS (words) are added to kube-apiserver's flags (e.g.
# audit logging for a benchmark).
#
# Without kube-controller-manager: ServiceAccounts are not created for you,
# namespaces never finish deleting, nothing is garbage-collected, and pods
# never run (set status.podIPs through the status subresource yourself).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "control-plane: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { echo "usage: $0 up|down|stop-apiserver|start-apiserver DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
marker=.nftpol-control-plane

# A free TCP port on 127.0.0.1 (not in use now, and not one handed out before).
taken=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    case "$taken" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "( sport = :$p )")" ]; then
      taken+="$p "
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# True when PID is alive (not a zombie) and, unless it is a child of this very
# shell (own_children=1 while `up` tears down after a failure: an unreaped
# child's pid cannot have been reused, and it may not have exec'd yet), its
# command line names binary NAME and DIR.
own_children=0
ours() {
  local pid=$1 name=$2 stat cmdline
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  case "$stat" in Z* | X*) return 1 ;; esac
  [ "$own_children" = 1 ] && return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmdline" in *"$name"*"$dir"*) return 0 ;; *) return 1 ;; esac
}

stop() { # name
  local f="$dir/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if ours "$pid" "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do ours "$pid" "$1" || break; sleep 0.1; done
    if ours "$pid" "$1"; then
      log "$1 (pid $pid) still running after 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do ours "$pid" "$1" || break; sleep 0.1; done
    fi
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

down() {
  [ -d "$dir" ] || { log "$dir does not exist; nothing to do"; return 0; }
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/$marker" ] || die "$dir was not made by '$0 up'; not touching it"
  stop kube-apiserver
  stop etcd
  rm -rf "$dir"
  log "removed $dir"
}

# Polls URL (extra curl args after it) until it answers 200 "ok"-ish, while PID lives.
wait_ready() { # name pid timeout-seconds url curl-args...
  local name=$1 pid=$2 timeout=$3 url=$4 t0=$SECONDS
  shift 4
  while :; do
    if curl -fsS --max-time 2 "$@" "$url" >/dev/null 2>&1; then
      log "$name ready in $((SECONDS - t0)) s"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited; last lines of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2 || true
      return 1
    fi
    if [ $((SECONDS - t0)) -ge "$timeout" ]; then
      log "$name not ready after $timeout s; last lines of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# openssl: a certificate for KEY signed by the CA, with the given subject and extensions.
sign() { # name subject extensions
  local pki=$dir/pki
  openssl req -new -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
eckey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/pki/$1.key" 2>/dev/null; }

# Starts kube-apiserver (the one place with its flags) and waits for /readyz.
run_apiserver() { # bin etcd_url api_port
  local bin=$1 etcd_url=$2 api_port=$3 pki=$dir/pki
  local api_url=https://127.0.0.1:$api_port
  "$bin/kube-apiserver" \
    --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --cert-dir="$dir/pki" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer="$api_url" \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    ${NFTPOL_APISERVER_ARGS:-} \
    </dev/null >>"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
  wait_ready kube-apiserver "$!" 90 "$api_url/readyz" \
    --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key"
}

up() {
  local bin=${NFTPOL_K8S_BIN:-}
  if [ -z "$bin" ]; then
    bin=$("$here/k8s-binaries.sh" | tail -n 1)
  fi
  for b in etcd kube-apiserver kubectl; do
    [ -x "$bin/$b" ] || die "$bin/$b missing; run hack/k8s-binaries.sh or set NFTPOL_K8S_BIN"
  done
  if [ -e "$dir" ]; then
    [ -z "$(ls -A "$dir")" ] || die "$dir exists and is not empty (a control plane there? '$0 down $dir' first)"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  touch "$dir/$marker"
  # From here on, a failure (or Ctrl-C) tears down whatever was started.
  started=0
  trap '[ "$started" = 1 ] || { log "start failed; tearing down"; own_children=1; down; }' EXIT
  trap 'exit 130' INT TERM HUP
  mkdir -p "$dir/pki" "$dir/etcd"
  chmod 700 "$dir/pki" "$dir/etcd"

  # PKI: a CA; the API server's serving certificate (loopback names only);
  # the admin's client certificate (group system:masters); the key pair that
  # signs and verifies service-account tokens.
  local pki=$dir/pki
  eckey ca
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=nftpol-test-ca" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
  eckey apiserver
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  eckey admin
  sign admin "/O=system:masters/CN=nftpol-test-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  local etcd_url=http://127.0.0.1:$etcd_port
  local api_url=https://127.0.0.1:$api_port

  "$bin/etcd" \
    --name=nftpol-test \
    --data-dir="$dir/etcd" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="nftpol-test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync \
    </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  wait_ready etcd "$!" 30 "$etcd_url/health"

  : >"$dir/kube-apiserver.log"
  run_apiserver "$bin" "$etcd_url" "$api_port"

  local kc=$dir/admin.kubeconfig
  "$bin/kubectl" config --kubeconfig="$kc" set-cluster nftpol-test \
    --server="$api_url" --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-credentials admin \
    --client-certificate="$pki/admin.crt" --client-key="$pki/admin.key" --embed-certs >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-context admin --cluster=nftpol-test --user=admin >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" use-context admin >/dev/null

  cat >"$dir/env" <<EOV
# Written by hack/control-plane.sh up; source it.
NFTPOL_K8S_BIN=$bin
ETCD_URL=$etcd_url
APISERVER_URL=$api_url
APISERVER_CA=$pki/ca.crt
KUBECONFIG=$kc
EOV
  started=1
  log "up: kube-apiserver $api_url (pid $(cat "$dir/kube-apiserver.pid")), etcd $etcd_url (pid $(cat "$dir/etcd.pid"))"
  log "try: $bin/kubectl --kubeconfig=$kc get --raw /readyz; stop with: $0 down $dir"
  echo "$kc"
}

# The DIR of a running `up`, entered: checks the marker and reads DIR/env.
existing() {
  [ -d "$dir" ] || die "$dir does not exist"
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/$marker" ] && [ -f "$dir/env" ] || die "$dir was not made by '$0 up'"
  # shellcheck disable=SC1091
  . "$dir/env"
}

stop_apiserver() {
  existing
  stop kube-apiserver
}

start_apiserver() {
  existing
  if [ -f "$dir/kube-apiserver.pid" ] && ours "$(cat "$dir/kube-apiserver.pid")" kube-apiserver; then
    die "kube-apiserver is already running (pid $(cat "$dir/kube-apiserver.pid"))"
  fi
  local port=${APISERVER_URL##*:}
  echo "--- start-apiserver $(date -u +%FT%TZ)" >>"$dir/kube-apiserver.log"
  if ! run_apiserver "$NFTPOL_K8S_BIN" "$ETCD_URL" "$port"; then
    stop kube-apiserver
    die "kube-apiserver did not come back"
  fi
  log "kube-apiserver $APISERVER_URL (pid $(cat "$dir/kube-apiserver.pid"))"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  stop-apiserver) stop_apiserver ;;
  start-apiserver) start_apiserver ;;
  *) usage ;;
esac
