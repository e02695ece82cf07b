"""Per run of a runs folder, from its oof.parquet alone: pooled ROC-AUC with 95 % intervals
resampling videos and resampling groups, log-loss, EER and a degenerate threshold, as a
markdown table. Works on runs written by older versions too (it reads only oof.parquet and
summary.json's head and inputs), which is how issue 14's before/after table was made:

    python benchmarks/demo_intervals.py demo_out/runs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.heads.metrics import bootstrap_intervals, degenerate_calls, equal_error_rate, log_loss, roc_auc  # noqa: E402


def main(runs: Path) -> None:
    print("| run | ROC-AUC | 95 % by video | 95 % by group | log-loss | EER | degenerate |")
    print("|---|---|---|---|---|---|---|")
    for run in sorted(runs.iterdir()):
        if not (run / "summary.json").is_file():
            continue
        s = json.loads((run / "summary.json").read_text())
        oof = pl.read_parquet(run / "oof.parquet")
        y, p, t, g = (oof[c].to_numpy() for c in ("label", "prob", "threshold", "group"))
        video = bootstrap_intervals(y, p, t, None, metrics=("roc_auc",), n=1000, seed=0)["roc_auc"]
        group = bootstrap_intervals(y, p, t, g, metrics=("roc_auc",), n=1000, seed=0)["roc_auc"]
        reads = "+".join(s["features"]) if s.get("inputs", "vectors") == "vectors" and s.get("features") else s.get("tap")
        print(f"| {s['head']} {reads} | {roc_auc(y, p):.3f} | {video[0]:.3f}–{video[1]:.3f} | {group[0]:.3f}–{group[1]:.3f} "
              f"({len(np.unique(g))} groups) | {log_loss(y, p):.3f} | {equal_error_rate(y, p):.3f} | {degenerate_calls(y, p, t) or '-'} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
