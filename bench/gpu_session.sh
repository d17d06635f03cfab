#!/usr/bin/env bash
# One device call that finishes `config/gpu.yaml` on a GPU, starting from the packs already
# committed in results/reference/gpu/cells/, and hands everything back as one archive.
#
#   here:    bash bench/gpu_carry.sh                     # wheels -> .whl/, data archive -> .carry/data/
#   device:  run(command="bash bench/gpu_session.sh", carry=[".whl", ".carry"], timeout_s=600)
#   here:    tar xzf <files_at>/gpu-session.tar.gz -C results/reference/gpu --strip-components=2
#
# Training stops after TRAIN_BUDGET_S seconds (default 450), leaving the rest of the 10-minute
# command for the archive; a pack cut off there is simply not in it, and the next call trains it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-450}
CORES=${CORES:-$(nproc)}
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
  # Only the distributions this interpreter lacks: the image's own torch, numpy and pandas stay.
  missing=$(python3 - <<'PY'
import importlib.metadata, pathlib, re
canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()
have = {canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
print(" ".join(str(w) for w in sorted(pathlib.Path(".whl").glob("*.whl")) if canonical(w.name.split("-")[0]) not in have))
PY
)
  # shellcheck disable=SC2086
  [ -z "$missing" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $missing || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch, torchvision, snakemake; print("torch", torch.__version__, "torchvision", torchvision.__version__, "snakemake", snakemake.__version__)'
  git rev-parse --short=12 HEAD 2>/dev/null || echo "commit unknown (no .git on the device)"
} | tee "$OUT/device.txt"

flags=(--configfile config/gpu.yaml --workflow-profile workflow/profiles/default --config data_path=.carry/data/cifar10-jpeg.tar.gz)
mkdir -p results/gpu
cp -r results/reference/gpu/cells results/gpu/
python3 -m snakemake "${flags[@]}" --unlock > /dev/null 2>&1  # a second call on a warm machine: the first one's TERM may leave a lock
python3 -m snakemake "${flags[@]}" --cores "$CORES" resources/datasets/cifar10-jpeg.npz > "$OUT/snakemake-data.log" 2>&1 || { tail -20 "$OUT/snakemake-data.log"; exit 1; }
# The carried packs count as done: without this the freshly built dataset file would retrain them.
python3 -m snakemake "${flags[@]}" --cores 1 --touch -- $(find results/gpu/cells -name result.json) > "$OUT/snakemake-touch.log" 2>&1 || { tail -20 "$OUT/snakemake-touch.log"; exit 1; }
python3 -m snakemake "${flags[@]}" -n --quiet rules | tee "$OUT/plan.txt"

start=$SECONDS
timeout --signal=TERM "$TRAIN_BUDGET_S" python3 -m snakemake "${flags[@]}" --cores "$CORES" --resources gpu=1 > "$OUT/snakemake.log" 2>&1
status=$?
echo "snakemake exit $status after $((SECONDS - start)) s (124: stopped at TRAIN_BUDGET_S=$TRAIN_BUDGET_S)" | tee -a "$OUT/device.txt"
grep -E "^(Finished jobid|Error in rule|[0-9]+ of [0-9]+ steps)" "$OUT/snakemake.log" | tail -n 40

# Results, not checkpoints (those stay on the device): cells, Parquet, figures, tables, claims, logs, timings.
tar czf "$OUT/gpu-session.tar.gz" --exclude='results/gpu/checkpoints' results/gpu
ls -la "$OUT"
[ -f results/gpu/claims.md ] && cat results/gpu/claims.md
exit 0
