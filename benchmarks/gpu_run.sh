#!/usr/bin/env bash
# The GPU measurements, in one go (for a lent GPU machine: torch present, ageest not installed).
# Writes its figures to $OUT (default ./gpu-results). Usage: bash benchmarks/gpu_run.sh
set -u
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 AGEEST_CACHE_DIR=/tmp/ageest-cache
OUT=${OUT:-gpu-results}; mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
$PY -m ageest synth /tmp/syn >/dev/null
$PY -m ageest prepare --images /tmp/syn/images --out /tmp/c224.npy --set image_size=224
# 1. Training-loop throughput, reference-style vs fast, same GPU.
timeout 110 $PY benchmarks/train_throughput.py --images /tmp/syn/images --sizes 224 112 --steps 30 \
    --device cuda --workers "$(nproc)" 2>&1 | tee "$OUT/throughput.txt"
reference=$(awk '$1 == 224 {print $2}' "$OUT/throughput.txt")
# 2. Study estimate from K concurrent folds (shortened, extrapolated to the recipe).
timeout 200 $PY benchmarks/study_estimate.py --images /tmp/syn/images --cache /tmp/c224.npy \
    --concurrency 1 4 8 --epochs 8 --freeze-epochs 2 ${reference:+--reference-img-s $reference} \
    --json "$OUT/study.json" 2>&1 | tee "$OUT/study.txt"
# 3. One whole fold at the reference recipe (100 epochs, 224 px), end to end.
timeout 130 $PY -m ageest train --images /tmp/syn/images --leave-subject 1 --loss mean_variance \
    --out "$OUT/fold001" --cache /tmp/c224.npy --set pretrained=none --set save_model=false \
    --set checkpoint_every_s=60 2>&1 | grep -E "^fold|epoch (1|10|11|50|100)/" | tee "$OUT/fold.txt"
