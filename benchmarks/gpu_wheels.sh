#!/usr/bin/env bash
# Wheels for a GPU node that has python3 and torch but no package registry (cp312, x86_64):
# what the project needs beyond torch/torchvision, split in two folders of at most 64 MiB
# each, so that each travels with one `device` call (carry wheels/a, then wheels/b).
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION=3.12]
#   # on the node, in two back-to-back calls:
#   python3 -m pip install --no-index --find-links wheels/a --find-links wheels/b av zarr numcodecs ... (see below)
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
ALL=wheels/all
mkdir -p "$ALL" wheels/a wheels/b
# the packages the node lacks (torch, numpy, typer, pyyaml, ... are assumed present)
$PY -m pip download --quiet --dest "$ALL" --only-binary=:all: --python-version "$PYV" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    av zarr numcodecs crc32c donfig polars lightgbm pydantic
# the node's torch came with these: leave them out; then fill a and b, largest first
$PY - "$ALL" <<'PYEOF'
import shutil, sys
from pathlib import Path
present = ("numpy-", "scipy-", "packaging-", "pyyaml-", "typing_extensions-")
files = sorted((p for p in Path(sys.argv[1]).glob("*.whl") if not p.name.lower().startswith(present)), key=lambda p: -p.stat().st_size)
sizes = {"a": 0, "b": 0}
for f in files:
    target = min(sizes, key=sizes.get)
    shutil.copy(f, Path("wheels") / target / f.name)
    sizes[target] += f.stat().st_size
for k, v in sizes.items():
    print(f"wheels/{k}: {v / 2**20:.1f} MiB" + ("  (over the 64 MiB a call carries)" if v > 64 * 2**20 else ""))
print("install on the node: python3 -m pip install --no-index --find-links wheels/a --find-links wheels/b "
      + " ".join(sorted({f.name.split("-")[0].replace("_", "-") for f in files})))
PYEOF
