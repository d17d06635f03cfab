#!/usr/bin/env bash
# One device call (at most 10 minutes) that checks and measures whole-step CUDA graphs (`cuda_graphs`):
#   (a) equality: graphed vs eager trajectories, bf16, single cells and packs of 8, dropout, BN, ghost BN
#       + micro-batches, vmap, and fp32 deterministic (bench/graphs_equality.py; final loss within 1%);
#   (b) benchmark (bench/train_throughput.py, synthetic CIFAR-shaped data, nothing carried):
#       WRN-16-4 batch 64, one cell: graphed engine vs eager engine vs the plain PyTorch reference,
#       with MFU and the training time of one 200-epoch cell; WRN-16-4 batch 512: graphed vs eager
#       and MFU; an 8-cell lr sweep at batch 64: graphed pack vs the same pack eager vs 8 graphed cells.
#
#   device:  run(command="bash bench/gpu_graphs.sh", timeout_s=600)
#   here:    DRY_RUN=1 bash bench/gpu_graphs.sh     # the same parts on the CPU, tiny (graphs ignored there)
#
# Needs nothing carried: the device image's torch (>= 2.4), torchvision, numpy and pyarrow are all it
# imports. MFU needs skipinit.cost (branch `plan`); without it the lines say "MFU n/a". Each part has
# its own time limit, so one part that hangs cannot take the others with it; everything lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-graphs}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
if [ -n "${DRY_RUN:-}" ]; then  # every part once, WRN-10-1 for a step or two, on the CPU
  device=cpu shape=(--depth 10 --width 1) workers=0 small=(--steps 1 --warmup 1 --repeats 1)
  equality_shape=(--depth 10 --width 1 --batch-size 16 --steps-per-epoch 2)
else
  device=cuda shape=(--depth 16 --width 4) workers=8 small=()
  equality_shape=()
fi
bench=("$PYTHON" bench/train_throughput.py --device "$device" "${shape[@]}" --workers "$workers")

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)'
  "$PYTHON" -c 'import skipinit.cost' 2>/dev/null && echo "skipinit.cost: present (MFU printed)" || echo "skipinit.cost: absent (MFU n/a; merge branch plan)"
  git rev-parse --short=12 HEAD 2>/dev/null || echo "commit unknown (no .git on the device)"
} | tee "$OUT/device.txt"

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a time limit, its output to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s, $(date -u +%T)): $*"
  timeout --signal=TERM "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name exit ${PIPESTATUS[0]} after ${SECONDS}s in all (124: hit its limit)" | tee -a "$OUT/device.txt"
}

part equality 150 "$PYTHON" bench/graphs_equality.py --device "$device" "${equality_shape[@]}" --json "$OUT/graphs_equality.json"
part cell64 150 "${bench[@]}" --mode cell --batch-size 64 --steps 300 --warmup 30 --repeats 2 --graphs "${small[@]}"
part cell512 90 "${bench[@]}" --mode cell --batch-size 512 --steps 60 --warmup 10 --graphs --no-reference "${small[@]}"
part sweep64 180 "${bench[@]}" --mode sweep --cells 8 --batch-size 64 --steps 100 --warmup 15 --graphs "${small[@]}"

grep -h -E "^(PASS|FAIL|equality:|engine images|graphed engine images|reference images|estimated|graphed/eager|engine/reference|packed|sequential|ratio=|warning)" \
  "$OUT"/equality.log "$OUT"/cell64.log "$OUT"/cell512.log "$OUT"/sweep64.log | tee "$OUT/summary.txt"
exit 0
