#!/bin/bash
# fer-bench under torchrun: one machine with all its GPUs by default,
#   bash experiments/launch/torchrun.sh method=qcs data=synthetic profile=gpu
# Several machines: run the same command on each with NNODES, NODE_RANK, MASTER_ADDR (the node-0 host) and one
# FER_BENCH_SESSION value shared by all of them (every rank must write into the same run directory), e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 FER_BENCH_SESSION=exp42 bash experiments/launch/torchrun.sh method=qcs ...
# Resume on any number of machines and GPUs (the run keeps its saved recipe; the preset is not applied again):
#   NNODES=1 bash experiments/launch/torchrun.sh resume=runs/<run dir>
# Lightning reads torchrun's environment; trainer.devices and trainer.num_nodes are set to match it.
# TORCHRUN: another torchrun executable (default: the project venv's).
set -euo pipefail
NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}
NNODES=${NNODES:-1}
PRESET=(trainer.preset=ddp)
for arg in "$@"; do [[ $arg == resume=* ]] && PRESET=(); done
export FER_BENCH_SESSION=${FER_BENCH_SESSION:-$(date +%Y%m%d-%H%M%S)-torchrun$$}
"${TORCHRUN:-.venv/bin/torchrun}" --nnodes="$NNODES" --node-rank="${NODE_RANK:-0}" --nproc-per-node="$NPROC" \
  --master-addr="${MASTER_ADDR:-127.0.0.1}" --master-port="${MASTER_PORT:-29500}" \
  -m fer_bench.cli bench "${PRESET[@]}" trainer.devices="$NPROC" trainer.num_nodes="$NNODES" "$@"
