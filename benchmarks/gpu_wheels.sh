#!/usr/bin/env bash
# Wheels for the GPU node, which has python3 (3.12) and torch but no package registry: the
# project's dependencies it lacks, at the releases constraints.txt pins (the ones CI tests
# with), for cp312 manylinux x86_64, split in two folders (wheels/a, wheels/b) that each fit
# in one `device` call (64 MiB a call, the working tree of about 1 MiB included).
#
#   bash benchmarks/gpu_wheels.sh          # PYTHON=... picks the pip that downloads (any version)
#
# Every wheel it keeps must be pinned in constraints.txt at exactly its version, else it stops;
# each folder must stay under LIMIT_MIB (62 = 64 less 2 of headroom), else it stops. It empties
# wheels/ first. Each folder installs on its own, in either order (--no-deps --target), so one
# folder never waits for a dependency in the other; the two device calls that carry them and
# run the check are spelled out in the header of benchmarks/gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT_MIB=${LIMIT_MIB:-62}
# pyproject.toml's dependencies that the node lacks (torch, torchvision, numpy, scipy, typer,
# pyyaml, fsspec, scikit-learn, tqdm, pillow, matplotlib are there); their own dependencies
# come along, pinned by constraints.txt too
NEED=(av zarr numcodecs polars lightgbm pydantic)
rm -rf wheels/all wheels/a wheels/b
mkdir -p wheels/all wheels/a wheels/b
$PY -m pip download --quiet --dest wheels/all --only-binary=:all: -c constraints.txt \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 "${NEED[@]}"
$PY - "$LIMIT_MIB" <<'PYEOF'
import re, shutil, subprocess, sys
from pathlib import Path

limit = float(sys.argv[1]) * 2**20
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pins = {}
for line in Path("constraints.txt").read_text().splitlines():
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==(\S+)", line)
    if m:
        pins[norm(m.group(1))] = m.group(2)
# already on the node, in versions that satisfy these wheels' requirements: not carried.
# typing-extensions is carried although the node has it: pydantic 2.14.4 needs >= 4.16.0
# (the pinned release), which the node's, older than CI's venv, may not be.
on_node = {"numpy", "scipy", "packaging", "pyyaml", "narwhals", "torch", "torchvision", "triton"}
on_node_prefix = ("nvidia-", "cuda-")
wheels = []
for p in sorted(Path("wheels/all").glob("*.whl")):
    name, version = p.name.split("-")[:2]
    name = norm(name)
    if name in on_node or name.startswith(on_node_prefix):
        continue
    if pins.get(name) != version:
        sys.exit(f"gpu_wheels: {p.name} is not the release constraints.txt pins ({name}=={pins.get(name, 'not pinned')})")
    wheels.append(p)
if not wheels:
    sys.exit("gpu_wheels: no wheels downloaded")
# the size of the working tree that travels with each call (tracked and untracked-not-ignored files)
files = subprocess.run(["git", "ls-files", "-coz", "--exclude-standard"], capture_output=True, check=True).stdout.split(b"\0")
tree = sum(Path(f.decode()).stat().st_size for f in files if f and Path(f.decode()).is_file())
# largest first, each into the emptier folder
sizes = {"a": 0, "b": 0}
for f in sorted(wheels, key=lambda p: -p.stat().st_size):
    target = min(sizes, key=sizes.get)
    shutil.copy(f, Path("wheels") / target / f.name)
    sizes[target] += f.stat().st_size
shutil.rmtree("wheels/all")
over = []
for k, v in sizes.items():
    names = sorted(p.name for p in Path("wheels", k).glob("*.whl"))
    print(f"wheels/{k}: {v / 2**20:.1f} MiB (+ {tree / 2**20:.1f} MiB working tree) = " + ", ".join(names))
    if v > limit or v + tree > 64 * 2**20:
        over.append(f"wheels/{k} ({v / 2**20:.1f} MiB, limit {limit / 2**20:.0f} MiB)")
if over:
    sys.exit("gpu_wheels: OVER THE LIMIT: " + "; ".join(over) + ": one device call cannot carry it")
PYEOF
