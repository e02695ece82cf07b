#!/usr/bin/env bash
# Everything a GPU node must show, in one run: each step has a time limit and none runs
# past a 470 s budget, so the whole finishes within 8 minutes (one H200, 16 cores):
#   1. the CUDA tests (tests/test_cuda.py: the device stage and a whole extraction on CUDA
#      against the CPU, within the tolerances stated there; NVDEC's frames against the CPU
#      decoder's, bit for bit, and an extraction whose spawned workers decode on NVDEC);
#   2. the bare r3d_18 forward, bf16, 16x112^2 and 16x224^2, batch 16-128;
#   3. end-to-end extraction at the fvc config (T=16, 224+112, K=10) on 720p and 1080p
#      videos made here (10-30 s), with 8 and 16 decode workers, and 16 with the backbone
#      replaced by zeros (what decoding and the device stage can feed); the JSON says which
#      stage bounds it (decode_busy against main_busy); before that, on one 720p and one
#      1080p of those videos, NVDEC against the CPU decoder: seconds per clip and frames
#      bit-identical (benchmarks/decode_speed.py --nvdec; extract.decoder=nvdec switches it on);
#   4. fine-tuning steps/s in bf16, batch 8-64 (benchmarks/finetune_speed.py);
#   5. a real CUDA out-of-memory during fine-tuning: the micro-batch halves, training goes on.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # on the GPU node, from the repository root
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh    # tiny sizes on a CPU: checks the script itself
#
# The node needs this project's dependencies importable by $PYTHON (default python3); a node
# without a package registry installs them from wheels first, e.g.
#   pip install --no-index --find-links wheels/ av zarr numcodecs crc32c donfig polars lightgbm pydantic ...
# Every step writes its output under OUT_DIR (default gpu_check_out) and the log says
# PASS/FAIL per step; the script goes on after a failed step.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python3}
DRY=${GPU_CHECK_DRY:-0}
mkdir -p "$OUT"
START=$(date +%s)
FAILED=()

BUDGET=${GPU_CHECK_BUDGET:-470}  # seconds for the whole run: a step never runs past it

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2 left
    shift 2
    left=$(( BUDGET - ($(date +%s) - START) ))
    (( limit > left )) && limit=$left
    if (( limit < 15 )); then
        echo "== $name: SKIPPED (the ${BUDGET}s budget is spent)"
        FAILED+=("$name (skipped)")
        return
    fi
    echo "== $name (limit ${limit}s, at $(( $(date +%s) - START ))s)"
    if timeout "$limit" "$@"; then
        echo "-- $name: PASS"
    else
        echo "-- $name: FAIL (exit $?)"
        FAILED+=("$name")
    fi
}

$PY - <<'EOF'
import os, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {os.cpu_count()} cores")
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
missing = []
for name in ("av", "zarr", "numcodecs", "polars", "lightgbm", "pydantic", "typer", "yaml", "sklearn", "fsspec", "tqdm", "PIL", "matplotlib"):
    try:
        __import__(name)
    except ImportError:
        missing.append(name)
print("missing packages: " + (", ".join(missing) if missing else "none"))
EOF

if [ "$DRY" = 1 ]; then
    FWD=(--sizes 32 --batches 2 --frames 4 --clips 4)
    VIDEOS=(--per-size 1 --sizes 320x240 --seconds 2 3)
    FVC=(--config configs/fvc.yaml --set clip.frames=4 --set clip.scales=[64,32] --set augment.variants=2 --set backbone.weights=random)
    WORKERS=(1 2); REPEAT=2; FT=(--frames 4 --size 32 --batches 2 --steps 2); OOM=(--cpu-dry-run --videos 12)
else
    FWD=(--sizes 112 224 --batches 16 32 64 128 --frames 16)
    VIDEOS=(--per-size 8 --sizes 1280x720 1920x1080 --seconds 10 30 --jobs 16)
    FVC=(--config configs/fvc.yaml --set backbone.weights=random)
    WORKERS=(8 16); REPEAT=12; FT=(--frames 16 --size 112 --batches 8 16 32 64 --steps 10); OOM=()
fi

step "cuda tests" 100 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
step "bare forward" 75 $PY benchmarks/backbone_forward.py "${FWD[@]}" --amp bf16 --json "$OUT/forward.json"
step "make videos" 60 $PY benchmarks/make_videos.py "$OUT/videos" "${VIDEOS[@]}"
step "index" 30 $PY cli.py index "$OUT/videos" --out "$OUT/samples.parquet"
# NVDEC against the CPU decoder on one 720p and one 1080p video: seconds per clip (pinned to one
# core, as a decode worker, and unpinned) and frames bit-identical to the CPU reference
PAIR=($(ls "$OUT"/videos/*/cam_720p_* 2>/dev/null | head -1) $(ls "$OUT"/videos/*/cam_1080p_* 2>/dev/null | head -1))
[ ${#PAIR[@]} -eq 0 ] && PAIR=($(ls "$OUT"/videos/*/*.mp4 | head -2))
NV=(--nvdec --variants nvdec); [ "$DRY" = 1 ] && NV=(--variants none)  # a CPU has no NVDEC: the step's plumbing only
step "NVDEC vs CPU decode" 45 $PY benchmarks/decode_speed.py "${PAIR[@]}" "${NV[@]}" --repeat 2 --json "$OUT/decode_nvdec.json"
for w in "${WORKERS[@]}"; do
    step "extract, $w workers" 70 $PY benchmarks/extract_throughput.py --samples "$OUT/samples.parquet" "${FVC[@]}" \
        --set extract.num_workers="$w" --repeat "$REPEAT" --json "$OUT/extract_w$w.json"
done
w=${WORKERS[-1]}
step "extract, $w workers, backbone-free" 50 $PY benchmarks/extract_throughput.py --samples "$OUT/samples.parquet" "${FVC[@]}" \
    --set extract.num_workers="$w" --repeat "$REPEAT" --backbone-free --json "$OUT/extract_free_w$w.json"
step "fine-tune speed" 60 $PY benchmarks/finetune_speed.py "${FT[@]}" --amp bf16
step "real out-of-memory recovery" 110 $PY benchmarks/cuda_oom_check.py --out "$OUT/oom" "${OOM[@]}"

echo "== done in $(( $(date +%s) - START ))s; failed steps: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
