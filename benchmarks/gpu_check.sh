#!/bin/bash
# The GPU session's checks, as one prepared run (under 8 minutes on an H100/H200), from the
# repository root of a machine that has torch and a GPU but no Java, no Spark and no network:
#   1. the digits recipe under plain torchrun (nccl, bf16) to >= 0.99 top-1, then its exported model
#      evaluated there: `torchonspark predict` over the val JPEGs, no Spark;
#   2. benchmarks/gpu_train_step.py: the worker's ResNet-50 step at the large-batch recipe's batch,
#      eager and compiled, and the loader's rate per core.
# It reads build/gpu-check/ (make gpu-check-data, here, about 35 MB; carry build/gpu-check/digits,
# build/gpu-check/digits-parquet and build/gpu-check/imagenet-parquet there) and writes its figures
# to $OUT (or build/gpu-check/out). `benchmarks/gpu_check.sh --smoke` runs the same steps on this CPU,
# tiny, as a check that the script itself works.
set -euo pipefail
DATA=build/gpu-check
OUT=${OUT:-$DATA/out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--smoke" ]; then
    DEVICE=cpu; TRAIN=(--max-iter 30 --test-interval 0 --snapshot 0); STEP=(--device cpu --batch 4 --steps 2 --warmup 1 --model resnet_18 --crop 64 --no-compile --loader-images 256)
else
    DEVICE=cuda; TRAIN=(); STEP=()
fi
[ -d "$DATA/digits-parquet" ] || { echo "gpu_check: $DATA/digits-parquet is missing: run make gpu-check-data first"; exit 2; }
# The project without installing it (that machine's Python may not be 3.11, and its packages must
# stay as they are): the torchonspark namespace as links to the checkout's folders.
SHIM=$(mktemp -d)
mkdir "$SHIM/torchonspark"
for part in netdefs datasets sparkjobs conf; do ln -s "$PWD/$part" "$SHIM/torchonspark/$part"; done
export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
rm -rf "$OUT/digits-run"
started=$(date +%s)
"$PYTHON" -m torch.distributed.run --nproc_per_node 1 -m torchonspark.sparkjobs.train_worker --recipe digits \
    --data "$DATA/digits-parquet" --output "$OUT/digits-run" --device "$DEVICE" "${TRAIN[@]}" 2>&1 | tee "$OUT/digits-train.log"
echo "digits training: $(( $(date +%s) - started )) s"
"$PYTHON" -m torchonspark.sparkjobs.cli predict --model "$OUT/digits-run/model" --top-k 1 --csv "$DATA/digits/val" > "$OUT/digits-predictions.csv"
"$PYTHON" - "$OUT/digits-predictions.csv" "$OUT/digits-run/model/labels.json" <<'PY'
import csv, json, sys
from pathlib import Path
rows = list(csv.DictReader(open(sys.argv[1])))
wnids = [entry["wnid"] for entry in json.load(open(sys.argv[2]))]
right = sum(Path(row["input"]).parent.name == wnids[int(row["index_1"])] for row in rows if not row["error"])
print(f"exported model on the val JPEGs, by predict: top-1 {right / len(rows):.4f} of {len(rows)} images")
PY
"$PYTHON" benchmarks/gpu_train_step.py --loader-data "$DATA/imagenet-parquet" --json "$OUT/gpu_train_step.json" "${STEP[@]}"
