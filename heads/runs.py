"""Run folders: ``runs/<run-id>/`` with the resolved config, summary.json and oof.parquet."""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from heads.metrics import METRIC_NAMES


def new_run_dir(root: str | Path, head: str) -> Path:
    """``root/<UTC time>-<head>-<random>``; created, never reused."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{head}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_run(run_dir: Path, config: dict, summary: dict, oof: pl.DataFrame) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    oof.write_parquet(run_dir / "oof.parquet")


def format_summary(summary: dict) -> str:
    """A readable table: each metric's mean ± std, per fold, and pooled over all folds."""
    metrics = summary["metrics"]
    n = len(metrics["roc_auc"]["per_fold"])

    def cell(v: float | None) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    head = f"{'metric':<10} {'mean ± std':>15}  " + " ".join(f"{'fold ' + str(i):>7}" for i in range(n)) + f" {'pooled':>7}"
    lines = [head, "-" * len(head)]
    for name in METRIC_NAMES:
        m = metrics[name]
        mean_std = f"{cell(m['mean'])} ± {cell(m['std'])}"
        folds = " ".join(f"{cell(v):>7}" for v in m["per_fold"])
        lines.append(f"{name:<10} {mean_std:>15}  {folds} {cell(summary['pooled'][name]):>7}")
    tta = summary.get("tta")
    if tta:
        auc = tta["metrics"]["roc_auc"]
        lines.append(
            f"{'tta auc':<10} {cell(auc['mean']) + ' ± ' + cell(auc['std']):>15}  "
            + " ".join(f"{cell(v):>7}" for v in auc["per_fold"])
            + f" {cell(tta['pooled']['roc_auc']):>7}   (scores averaged over {summary['n_variants']} variants; reported apart)"
        )
    audit = summary["split_audit"]
    lines.append(
        f"split: {summary['split']} {summary['n_folds']}-fold over {audit['n_videos']} videos in {audit['n_groups']} groups; "
        f"groups in two folds: {audit['leaking_groups']}, videos in two folds: {audit['leaking_videos']}"
    )
    if summary["split"] != "grouped":
        lines.append("WARNING: naive row-level split; variants and near-duplicates cross folds, scores are inflated")
    if summary.get("shuffle_labels"):
        lines.append("labels were shuffled across groups (permutation check): scores should be at chance")
    return "\n".join(lines)


def format_comparison(summaries: list[dict]) -> str:
    """One line per run: head, features, split, ROC-AUC mean ± std and pooled, F1, run id."""
    head = f"{'head':<6} {'features':<24} {'split':<8} {'roc_auc mean ± std':>19} {'pooled':>7} {'tta':>6} {'f1':>6}  run"
    lines = [head, "-" * len(head)]
    for s in summaries:
        auc = s["metrics"]["roc_auc"]
        tta = f"{s['tta']['pooled']['roc_auc']:>6.3f}" if s.get("tta") else f"{'-':>6}"
        lines.append(
            f"{s['head']:<6} {'+'.join(s['features']):<24} {s['split']:<8} "
            f"{auc['mean']:>11.3f} ± {auc['std']:.3f} {s['pooled']['roc_auc']:>7.3f} {tta} {s['metrics']['f1']['mean']:>6.3f}  {s['run_id']}"
        )
    return "\n".join(lines)
