#!/usr/bin/env bash
# Every benchmark behind docs/performance.md, with the settings its figures
# were measured with, one after the other (as root; roughly an hour on the
# 2-core machine described there; the Kubernetes binaries are built or
# taken from their cache by hack/k8s-binaries.sh). Each bench's output goes
# to $NFTPOL_BENCH_OUT (default target/bench-all)/<bench>.txt as well as to
# the terminal; the plots to docs/img.
#
#   hack/bench-all.sh                # everything
#   hack/bench-all.sh agent_latency  # one or more of the names below
#
# Measure on an otherwise idle machine and compare ratios within one run:
# the figures move by tens of percent with the load (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${NFTPOL_BENCH_OUT:-target/bench-all}
mkdir -p "$out"
if [ -z "${NFTPOL_K8S_BIN:-}" ]; then
  NFTPOL_K8S_BIN=$(hack/k8s-binaries.sh | tail -n 1)
fi
export NFTPOL_K8S_BIN

# name: environment for `cargo bench --bench <name>` (docs/performance.md
# names the section each one's figures are in).
declare -A env=(
  [scale]="NFTPOL_ROUNDS=7 NFTPOL_PLOTS=docs/img"              # Compile, memory, CLI; Kernel
  [packet_path]="NFTPOL_ROUNDS=7 NFTPOL_PLOTS=docs/img"        # Packet path
  [incremental]="NFTPOL_SCALES=large,realistic NFTPOL_ROUNDS=11"         # Incremental compile
  [nft_transport]=""                                           # A process per transaction; Netlink batches
  [structural_apply]="NFTPOL_SCALES=large,realistic NFTPOL_ROUNDS=6"  # Structural changes as netlink batches
  [agent_latency]="NFTPOL_SCALES=large,realistic NFTPOL_CHURN=all NFTPOL_SAMPLES=200"  # Agent: event to kernel
  [agent_memory]=""                                            # Agent memory
  [fleet]=""                                                   # A fleet of agents
  [cost_model]="NFTPOL_ROUNDS=3"                               # Cost model
)
order=(scale packet_path incremental nft_transport structural_apply agent_latency agent_memory fleet cost_model)
if [ $# -gt 0 ]; then
  order=("$@")
fi
for b in "${order[@]}"; do
  if [ -z "${env[$b]+x}" ]; then
    echo "bench-all: no benchmark '$b' (one of: ${!env[*]})" >&2
    exit 2
  fi
done
cargo bench --no-run
for b in "${order[@]}"; do
  echo "== $b (${env[$b]:-defaults}) $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  env ${env[$b]} cargo bench --bench "$b" 2>&1 | tee "$out/$b.txt"
done
echo "bench-all: outputs in $out"
