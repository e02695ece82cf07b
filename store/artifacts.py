"""Reading files a user hands over (checkpoints, model specs, LightGBM models) safely.

Every reader here turns a damaged, foreign or hostile file into an :class:`ArtifactError`
with one line that names the file and says what to do; none runs code from the file:

* torch files load with ``weights_only=True``; a refused pickle says the file is not a
  valid checkpoint (never to disable the safeguard);
* YAML loads with the safe loader; a tag or a syntax error is named with its line;
* a LightGBM model text is checked before LightGBM sees it (size, header, the number of
  trees and of leaves, each tree's arrays against its leaf count), then parsed once in a
  separate process: a file that would abort LightGBM (e.g. an absurd ``num_leaves``) costs
  that process, not the caller's.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any


class ArtifactError(ValueError):
    """A file that is not the artifact it should be; the message names it."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def load_torch_file(path: str | Path, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``, or an ArtifactError naming the file."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ArtifactError(
            f"{path} is not a valid {what}: it holds objects a {what} may not contain (only tensors and plain values "
            "are loaded); make it again with vidstore"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, ImportError) as err:
        raise ArtifactError(f"{path} is not a valid {what} ({type(err).__name__}: {_first_line(err)})") from None


def read_yaml_file(path: str | Path, what: str = "file") -> Any:
    """``yaml.safe_load`` of ``path``, or an ArtifactError naming the file and the line."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or _first_line(err)
        raise ArtifactError(f"{what} {path} is not plain YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{what} {path} is not a text file") from None
    except OSError as err:
        raise ArtifactError(f"cannot read {what} {path}: {err.strerror or _first_line(err)}") from None


# -- LightGBM model files ----------------------------------------------------------------------

LGB_MAX_BYTES = 1 << 30  # a head over 1 GiB of text is not one this tool wrote
LGB_MAX_TREES = 100_000
LGB_MAX_LEAVES = 131_072  # LightGBM's own upper bound on num_leaves
LGB_MAX_FEATURES = 10_000_000
_PER_LEAF = ("leaf_value", "leaf_weight", "leaf_count")
_PER_SPLIT = ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child", "internal_value",
              "internal_weight", "internal_count")
_checked: set[str] = set()  # digests of model texts that parsed in a child process


def check_lightgbm_text(text: str, path: str) -> None:
    """Refuse a LightGBM model text whose header or trees are out of bounds or inconsistent."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "tree":
        raise ArtifactError(f"{path} is not a LightGBM model file (its first line is not 'tree')")
    if not any(re.fullmatch(r"version=v\d+", line.strip()) for line in lines[:5]):
        raise ArtifactError(f"{path} is not a LightGBM model file (no version line in its header)")
    n_trees = 0
    tree: dict[str, str] = {}

    def check_tree() -> None:
        if not tree:
            return
        try:
            leaves = int(tree.get("num_leaves", "x"))
        except ValueError:
            raise ArtifactError(f"{path}: tree {n_trees - 1} has no valid num_leaves") from None
        if not 1 <= leaves <= LGB_MAX_LEAVES:
            raise ArtifactError(f"{path}: tree {n_trees - 1} has num_leaves={leaves}, outside 1..{LGB_MAX_LEAVES}")
        for key in _PER_LEAF + _PER_SPLIT:
            if key in tree:
                want = leaves if key in _PER_LEAF else leaves - 1
                got = len(tree[key].split()) if tree[key].strip() else 0
                if got != want and not (got == 0 and key != "leaf_value"):  # a one-leaf tree leaves some empty
                    raise ArtifactError(f"{path}: tree {n_trees - 1} has {got} {key} values for {leaves} leaves (expected {want})")
        if leaves > 1 and "leaf_value" not in tree:
            raise ArtifactError(f"{path}: tree {n_trees - 1} has no leaf_value")

    for line in lines:
        line = line.strip()
        if line.startswith("Tree="):
            check_tree()
            tree = {}
            n_trees += 1
            if n_trees > LGB_MAX_TREES:
                raise ArtifactError(f"{path} has more than {LGB_MAX_TREES} trees")
        elif line == "end of trees":
            check_tree()
            tree = {}
        elif "=" in line and n_trees:
            key, _, value = line.partition("=")
            tree[key] = value
        elif line.startswith("max_feature_idx="):
            try:
                ok = 0 <= int(line.split("=", 1)[1]) < LGB_MAX_FEATURES
            except ValueError:
                ok = False
            if not ok:
                raise ArtifactError(f"{path}: {line} is out of bounds")
    if n_trees == 0:
        raise ArtifactError(f"{path} holds no trees")


def load_lightgbm_model(path: str | Path):
    """A ``lightgbm.Booster`` from a model file, once the file passed the checks above and
    parsed without harm in a child process."""
    import lightgbm as lgb

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"LightGBM model {path} not found")
    size = path.stat().st_size
    if size > LGB_MAX_BYTES:
        raise ArtifactError(f"{path} is {size / 2**20:.0f} MiB, over the {LGB_MAX_BYTES >> 20} MiB a LightGBM head may have")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ArtifactError(f"{path} is not a LightGBM model file (not text)") from None
    check_lightgbm_text(text, str(path))
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest not in _checked:
        code = "import sys, lightgbm; lightgbm.Booster(model_str=sys.stdin.read())"
        try:
            done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"LightGBM took over 300 s to parse {path}") from None
        if done.returncode != 0:
            how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
            last = (done.stderr.strip().splitlines() or [""])[-1][:200]
            raise ArtifactError(f"LightGBM cannot parse {path} ({how}{': ' + last if last else ''})")
        _checked.add(digest)
    try:
        return lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as err:
        raise ArtifactError(f"LightGBM cannot parse {path}: {_first_line(err)}") from None
