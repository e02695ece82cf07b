"""Run folders and comparisons.

``runs/<run-id>/`` holds ``config.yaml`` (resolved), ``summary.json``, ``oof.parquet``
(per video: fold, label, probability, threshold), ``metrics.jsonl`` (training curves, one
line per fold, stage and epoch or boosting round), PNG plots and ``report.html``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from heads.metrics import METRIC_NAMES
from store.provenance import versioned_fields

RUN_SUMMARY_VERSION = 2  # 2: typed summary, head inputs (features or tap), fold models as saved heads


class RunError(ValueError):
    """A run folder that does not exist or has no summary."""


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``: what was trained on what, and how it scored (per fold and pooled)."""

    head: str
    inputs: str  # the head's inputs: "vectors" (features) or "map" (tap)
    features: list[str]  # the flat arrays a vectors head read ([] for a map head)
    tap: str | None  # the map a map head read
    store: str
    scale: int
    n_folds: int
    seed: int
    split: str
    shuffle_labels: bool
    calibration: str
    inner_holdout: float
    inner_folds: int
    thresholds: list
    level: str
    n_rows: int
    n_videos: int
    n_variants: int
    class_counts: dict
    metrics: dict
    pooled: dict
    roc_auc_95ci: list
    tta: dict | None
    slices: dict
    split_audit: dict
    folds: list
    head_info: dict
    store_provenance: dict  # backbone and preprocessing hash (the whole record is provenance.json)
    seconds: float
    run_id: str = ""
    top_features: list | None = None  # heads with an importance: (feature, mean importance), largest first
    sweep_point: dict | None = None
    version: int = RUN_SUMMARY_VERSION

    @property
    def reads(self) -> str:
        """What the head read, as one string: its features joined by '+', or its tap."""
        return "+".join(self.features) if self.inputs == "vectors" else str(self.tap)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict, where: str = "run summary") -> "RunSummary":
        return cls(**versioned_fields(cls, data, RUN_SUMMARY_VERSION, where))

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunSummary":
        path = Path(run_dir) / "summary.json"
        if not path.is_file():
            raise RunError(f"{run_dir} is not a run folder (no summary.json)")
        return cls.from_dict(json.loads(path.read_text()), f"run {run_dir} (summary.json)")


def new_run_dir(root: str | Path, head: str) -> Path:
    """``root/<UTC time>-<head>-<random>``; created, never reused."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{head}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, which JSON can hold; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_run(run_dir: Path, config: dict, summary: RunSummary, oof: pl.DataFrame, curves: list[dict]) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    oof.write_parquet(run_dir / "oof.parquet")
    with open(run_dir / "metrics.jsonl", "w") as handle:
        for record in curves:
            handle.write(json.dumps(json_safe(record)) + "\n")


def _cell(v: float | None) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_summary(summary: RunSummary) -> str:
    """A readable table: each metric's mean ± std, per fold, and pooled over all folds."""
    metrics = summary.metrics
    n = len(metrics["roc_auc"]["per_fold"])
    head = f"{'metric':<17} {'mean ± std':>15}  " + " ".join(f"{'fold ' + str(i):>7}" for i in range(n)) + f" {'pooled':>7}"
    lines = [head, "-" * len(head)]
    for name in METRIC_NAMES:
        m = metrics[name]
        mean_std = f"{_cell(m['mean'])} ± {_cell(m['std'])}"
        folds = " ".join(f"{_cell(v):>7}" for v in m["per_fold"])
        lines.append(f"{name:<17} {mean_std:>15}  {folds} {_cell(summary.pooled[name]):>7}")
    lines.append(f"{'threshold':<17} {'':>15}  " + " ".join(f"{_cell(v):>7}" for v in summary.thresholds) + "   (F1-best on training-side predictions)")
    tta = summary.tta
    if tta:
        auc = tta["metrics"]["roc_auc"]
        lines.append(
            f"{'tta roc_auc':<17} {_cell(auc['mean']) + ' ± ' + _cell(auc['std']):>15}  "
            + " ".join(f"{_cell(v):>7}" for v in auc["per_fold"])
            + f" {_cell(tta['pooled']['roc_auc']):>7}   (probabilities averaged over {summary.n_variants} variants; reported apart)"
        )
    lo, hi = summary.roc_auc_95ci or [None, None]
    if lo is not None:
        lines.append(f"pooled roc_auc 95 % interval (bootstrap over videos): {_cell(lo)} to {_cell(hi)}")
    audit = summary.split_audit
    lines.append(
        f"split: {summary.split} {summary.n_folds}-fold over {audit['n_videos']} videos in {audit['n_groups']} groups; "
        f"groups in two folds: {audit['leaking_groups']}, videos in two folds: {audit['leaking_videos']}"
    )
    if audit.get("leaking_identical_files"):
        lines.append(
            f"LEAK: {audit['leaking_identical_files']} sets of identical files under different ids are in different folds "
            f"(e.g. {audit['examples'][-1]}); give them one group"
        )
    if summary.split != "grouped":
        lines.append("WARNING: naive row-level split; variants and near-duplicates cross folds, scores are inflated")
    if summary.shuffle_labels:
        lines.append("labels were shuffled across groups (permutation check): scores should be at chance")
    return "\n".join(lines)


COMPARE_COLUMNS = ("head", "features", "split", "roc_auc", "roc_auc_std", "pooled_auc", "auc_95ci", "tta_auc", "pr_auc",
                   "balanced_accuracy", "f1", "log_loss", "ece", "videos", "seconds", "run")


def comparison_rows(summaries: list[RunSummary]) -> list[dict]:
    rows = []
    for s in summaries:
        m = s.metrics
        ci = s.roc_auc_95ci or [None, None]
        rows.append(
            {
                "head": s.head,
                "features": s.reads,
                "split": s.split + ("/shuffled" if s.shuffle_labels else ""),
                "roc_auc": m["roc_auc"]["mean"],
                "roc_auc_std": m["roc_auc"]["std"],
                "pooled_auc": s.pooled["roc_auc"],
                "auc_95ci": f"{_cell(ci[0])}-{_cell(ci[1])}" if ci[0] is not None else "",
                "tta_auc": s.tta["pooled"]["roc_auc"] if s.tta else None,
                "pr_auc": m["pr_auc"]["mean"],
                "balanced_accuracy": m["balanced_accuracy"]["mean"],
                "f1": m["f1"]["mean"],
                "log_loss": m["log_loss"]["mean"],
                "ece": m["ece"]["mean"],
                "videos": s.n_videos,
                "seconds": s.seconds,
                "run": s.run_id,
            }
        )
    return rows


def sorted_rows(summaries: list[RunSummary], sort: str | None) -> list[dict]:
    """Comparison rows, best first by ``sort`` (largest first; smallest first for losses)."""
    rows = comparison_rows(summaries)
    if sort:
        if sort not in COMPARE_COLUMNS or sort in ("head", "features", "split", "auc_95ci", "run"):
            raise RunError(f"cannot sort by {sort!r}; choose a number column of {list(COMPARE_COLUMNS)}")
        descending = sort not in ("log_loss", "ece", "seconds")
        rows.sort(key=lambda r: (r[sort] is None, -(r[sort] or 0) if descending else (r[sort] or 0)))
    return rows


def format_comparison(summaries: list[RunSummary], sort: str | None = None) -> str:
    """One line per run, sorted by ``sort``."""
    rows = sorted_rows(summaries, sort)
    head = (f"{'head':<10} {'features':<24} {'split':<9} {'roc_auc ± std':>15} {'pooled':>7} {'95% CI':>12} {'tta':>6} "
            f"{'bal_acc':>7} {'f1':>6} {'logloss':>7} {'ece':>6}  run")
    lines = [head, "-" * len(head)]
    for r in rows:
        tta = _cell(r["tta_auc"]) if r["tta_auc"] is not None else "-"
        lines.append(
            f"{r['head']:<10} {r['features'][:24]:<24} {r['split']:<9} {_cell(r['roc_auc']) + ' ± ' + _cell(r['roc_auc_std']):>15} "
            f"{_cell(r['pooled_auc']):>7} {r['auc_95ci']:>12} {tta:>6} {_cell(r['balanced_accuracy']):>7} {_cell(r['f1']):>6} "
            f"{_cell(r['log_loss']):>7} {_cell(r['ece']):>6}  {r['run']}"
        )
    return "\n".join(lines)


def load_summaries(run_dirs: list[str | Path]) -> list[RunSummary]:
    return [RunSummary.read(run) for run in run_dirs]


def write_comparison(summaries: list[RunSummary], out: str | Path, sort: str | None = None) -> tuple[Path, Path]:
    """``out``.csv and ``out``.md with the comparison rows."""
    rows = sorted_rows(summaries, sort)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out.with_suffix(".csv"), out.with_suffix(".md")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COMPARE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)

    def show(v):
        return _cell(v) if isinstance(v, float) or v is None else str(v)

    lines = ["| " + " | ".join(COMPARE_COLUMNS) + " |", "|" + "---|" * len(COMPARE_COLUMNS)]
    lines += ["| " + " | ".join(show(r[c]) for c in COMPARE_COLUMNS) + " |" for r in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path
