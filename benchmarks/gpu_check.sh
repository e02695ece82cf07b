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
# Every step writes its output under OUT_DIR (default gpu_check_out) and the log says
# PASS/FAIL per step; the script goes on after a failed step. The preamble prints what is
# missing and each installed package whose release differs from constraints.txt (CI's).
#
# ON THE H200 NODE (python3 3.12 with torch 2.11, no package registry) with the `device` tool,
# from the checkout that the tool sends, whose wheels/ this machine filled:
#   0. Here: `bash benchmarks/gpu_wheels.sh` (PyPI, a minute). It must end without an error,
#      printing wheels/a and wheels/b, each under 62 MiB. `status` (free) must say
#      can_start_another: true and budget_left_s >= 720 (a start takes 1-2 min of it).
#   1. run  carry=["wheels/a"]  timeout_s=120  command=
#        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/a/*.whl && touch /tmp/site/.a-done && ls /tmp/site && nvidia-smi -L
#   2. At once, no other tool call in between (the machine stays warm 30 s, and /tmp/site
#      lives only while it does):
#      run  carry=["wheels/b"]  timeout_s=600  command=
#        test -e /tmp/site/.a-done || { echo "call 1's install is gone (the machine went cold): redo call 1, then this"; exit 3; }; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/b/*.whl || exit 4; export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1; set -o pipefail; bash benchmarks/gpu_check.sh /tmp/gco 2>&1 | tee $OUT/gpu_check.log; rc=$?; cp /tmp/gco/*.json $OUT/; exit $rc
#   3. give_back. The log and every step's JSON file (forward, extract_w8, ...: $OUT takes
#      8 files, so keep the JSON files at 7 or fewer) come back under files_at.
# Each folder installs on its own with --no-deps into /tmp/site, which PYTHONPATH puts first,
# so neither call needs the other's wheels (pip resolving dependencies in call 1 would stop:
# some sit in wheels/b); the node's own numpy, scipy, packaging, pyyaml and narwhals satisfy
# the rest. Call 2 takes about 520 s (gpu_check's 470 s budget, the install, torch's start);
# with the start, call 1 and the gap, about 11 of the 15 minutes.
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
import importlib.metadata as md, os, re, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {os.cpu_count()} cores")
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
missing = []
for name in ("av", "zarr", "numcodecs", "google_crc32c", "donfig", "polars", "lightgbm", "pydantic", "typer", "yaml", "sklearn",
             "scipy", "fsspec", "tqdm", "PIL", "matplotlib"):
    try:
        __import__(name)
    except Exception as err:  # an OSError too: a shared library missing
        missing.append(f"{name} ({type(err).__name__}: {err})")
print("missing packages: " + (", ".join(missing) if missing else "none"))
differ = []
for line in open("constraints.txt"):
    pin = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
    if pin:
        try:
            version = md.version(pin.group(1))
        except md.PackageNotFoundError:
            continue
        if version.split("+")[0] != pin.group(2):
            differ.append(f"{pin.group(1)} {version} (CI {pin.group(2)})")
print("releases other than constraints.txt's: " + (", ".join(differ) if differ else "none"))
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

# The order puts last what matters least, so that if the budget runs short it is what gets
# cut: the issue's required figures first, then NVDEC, then the 8-worker extraction.
step "cuda tests" 100 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
step "bare forward" 75 $PY benchmarks/backbone_forward.py "${FWD[@]}" --amp bf16 --json "$OUT/forward.json"
step "fine-tune speed" 60 $PY benchmarks/finetune_speed.py "${FT[@]}" --amp bf16
step "real out-of-memory recovery" 110 $PY benchmarks/cuda_oom_check.py --out "$OUT/oom" "${OOM[@]}"
step "make videos" 60 $PY benchmarks/make_videos.py "$OUT/videos" "${VIDEOS[@]}"
step "index" 30 $PY cli.py index "$OUT/videos" --out "$OUT/samples.parquet"
extract_step() {  # extract_step WORKERS [--backbone-free]
    local name="extract, $1 workers${2:+, backbone-free}" json="$OUT/extract_${2:+free_}w$1.json"
    step "$name" "$([ -n "${2:-}" ] && echo 50 || echo 70)" $PY benchmarks/extract_throughput.py --samples "$OUT/samples.parquet" \
        "${FVC[@]}" --set extract.num_workers="$1" --repeat "$REPEAT" ${2:-} --json "$json"
}
extract_step "${WORKERS[1]}"
extract_step "${WORKERS[1]}" --backbone-free
# NVDEC against the CPU decoder on one 720p and one 1080p video: seconds per clip (pinned to one
# core, as a decode worker, and unpinned) and frames bit-identical to the CPU reference
PAIR=($(ls "$OUT"/videos/*/cam_720p_* 2>/dev/null | head -1) $(ls "$OUT"/videos/*/cam_1080p_* 2>/dev/null | head -1))
[ ${#PAIR[@]} -eq 0 ] && PAIR=($(ls "$OUT"/videos/*/*.mp4 | head -2))
NV=(--nvdec --variants nvdec); [ "$DRY" = 1 ] && NV=(--variants none)  # a CPU has no NVDEC: the step's plumbing only
step "NVDEC vs CPU decode" 45 $PY benchmarks/decode_speed.py "${PAIR[@]}" "${NV[@]}" --repeat 2 --json "$OUT/decode_nvdec.json"
extract_step "${WORKERS[0]}"

echo "== done in $(( $(date +%s) - START ))s; failed steps: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
