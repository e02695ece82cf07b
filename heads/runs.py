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

from vidstore.heads.metrics import METRIC_NAMES
from vidstore.store.provenance import versioned_fields

# 2: typed summary, head inputs (features or tap), fold models as saved heads;
# 3: group-bootstrap intervals, EER and low-FPR rates, threshold rule, degenerate flag, warnings
RUN_SUMMARY_VERSION = 3


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
    intervals: dict  # 95 % bootstrap intervals: by_group (read this), by_video, n_groups, n_videos, resamples
    tta: dict | None
    slices: dict
    split_audit: dict
    folds: list
    head_info: dict
    store_provenance: dict  # backbone and preprocessing hash (the whole record is provenance.json)
    seconds: float
    run_id: str = ""
    threshold_rule: str = "f1"
    degenerate: dict | None = None  # {"pooled": why or None, "folds": {fold: why}}: a threshold calling >= 95 % of a class one way
    warnings: list | None = None  # sentences a reader must not miss (worse than chance, degenerate threshold, left-out overlap)
    evaluated: dict | None = None  # split "external": the model, the samples, what was left out and why
    top_features: list | None = None  # heads with an importance: (feature, mean importance), largest first
    sweep_point: dict | None = None
    version: int = RUN_SUMMARY_VERSION

    @property
    def is_degenerate(self) -> bool:
        d = self.degenerate or {}
        return bool(d.get("pooled") or d.get("folds"))

    def interval(self, metric: str = "roc_auc", by: str = "group") -> tuple[float | None, float | None]:
        """The 95 % interval of ``metric`` resampling groups (or videos: ``by="video"``)."""
        lo, hi = (self.intervals.get(f"by_{by}") or {}).get(metric) or (None, None)
        return lo, hi

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
    lines.append(f"{'threshold':<17} {'':>15}  " + " ".join(f"{_cell(v):>7}" for v in summary.thresholds)
                 + (f"   (the mean of the fold models' thresholds, rule {summary.threshold_rule})" if summary.split == "external"
                    else f"   (rule {summary.threshold_rule}, chosen on training-side predictions)"))
    tta = summary.tta
    if tta:
        auc = tta["metrics"]["roc_auc"]
        lines.append(
            f"{'tta roc_auc':<17} {_cell(auc['mean']) + ' ± ' + _cell(auc['std']):>15}  "
            + " ".join(f"{_cell(v):>7}" for v in auc["per_fold"])
            + f" {_cell(tta['pooled']['roc_auc']):>7}   (probabilities averaged over {summary.n_variants} variants; reported apart)"
        )
    lines += interval_lines(summary)
    audit = summary.split_audit
    if summary.split == "external":
        ev = summary.evaluated or {}
        lines.append(f"split: external: {summary.n_videos} videos of {ev.get('samples')} scored by {ev.get('model')}; "
                     f"left out (also in the training data): {ev.get('n_overlap', 0)}")
    else:
        lines.append(
            f"split: {summary.split} {summary.n_folds}-fold over {audit['n_videos']} videos in {audit['n_groups']} groups; "
            f"groups in two folds: {audit['leaking_groups']}, videos in two folds: {audit['leaking_videos']}"
        )
    if audit.get("leaking_identical_files"):
        lines.append(
            f"LEAK: {audit['leaking_identical_files']} sets of identical files under different ids are in different folds "
            f"(e.g. {audit['examples'][-1]}); give them one group"
        )
    if summary.split == "naive":
        lines.append("WARNING: naive row-level split; variants and near-duplicates cross folds, scores are inflated")
    if summary.shuffle_labels:
        lines.append("labels were shuffled across groups (permutation check): scores should be at chance")
    lines += [f"WARNING: {w}" for w in summary.warnings or []]
    return "\n".join(lines)


def interval_lines(summary: RunSummary) -> list[str]:
    """One line per interval metric: the group bootstrap (with its number of groups), the
    video bootstrap beside it."""
    iv = summary.intervals or {}
    if not iv.get("by_group"):
        return []
    out = [f"pooled 95 % intervals, bootstrap over {iv['n_groups']} groups (over {iv['n_videos']} videos beside, narrower "
           f"when groups hold near-duplicates):"]
    for metric in iv["by_group"]:
        g, v = summary.interval(metric, "group"), summary.interval(metric, "video")
        out.append(f"  {metric:<17} {_cell(g[0])} to {_cell(g[1])}  (n_groups={iv['n_groups']})   by video {_cell(v[0])} to {_cell(v[1])}")
    return out


COMPARE_COLUMNS = ("head", "features", "split", "roc_auc", "roc_auc_std", "pooled_auc", "auc_95ci", "n_groups", "auc_95ci_video",
                   "tta_auc", "pr_auc", "eer", "tpr_at_fpr_0.05", "balanced_accuracy", "f1", "log_loss", "ece", "threshold_rule",
                   "flags", "videos", "seconds", "run")
TEXT_COLUMNS = ("head", "features", "split", "auc_95ci", "auc_95ci_video", "threshold_rule", "flags", "run")


def comparison_rows(summaries: list[RunSummary]) -> list[dict]:
    rows = []
    for s in summaries:
        m = s.metrics
        ci, ci_video = s.interval("roc_auc", "group"), s.interval("roc_auc", "video")
        flags = [f for f, on in (("worse-than-chance", any("worse than chance" in w for w in s.warnings or [])),
                                 ("degenerate", s.is_degenerate), ("overlap-left-out", bool((s.evaluated or {}).get("n_overlap")))) if on]
        rows.append(
            {
                "head": s.head,
                "features": s.reads,
                "split": s.split + ("/shuffled" if s.shuffle_labels else ""),
                "roc_auc": m["roc_auc"]["mean"],
                "roc_auc_std": m["roc_auc"]["std"],
                "pooled_auc": s.pooled["roc_auc"],
                "auc_95ci": f"{_cell(ci[0])}-{_cell(ci[1])}" if ci[0] is not None else "",
                "n_groups": (s.intervals or {}).get("n_groups"),
                "auc_95ci_video": f"{_cell(ci_video[0])}-{_cell(ci_video[1])}" if ci_video[0] is not None else "",
                "tta_auc": s.tta["pooled"]["roc_auc"] if s.tta else None,
                "pr_auc": m["pr_auc"]["mean"],
                "eer": s.pooled["eer"],
                "tpr_at_fpr_0.05": s.pooled["tpr_at_fpr_0.05"],
                "balanced_accuracy": m["balanced_accuracy"]["mean"],
                "f1": m["f1"]["mean"],
                "log_loss": m["log_loss"]["mean"],
                "ece": m["ece"]["mean"],
                "threshold_rule": s.threshold_rule,
                "flags": ",".join(flags),
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
        if sort not in COMPARE_COLUMNS or sort in TEXT_COLUMNS:
            raise RunError(f"cannot sort by {sort!r}; choose a number column of {[c for c in COMPARE_COLUMNS if c not in TEXT_COLUMNS]}")
        descending = sort not in ("log_loss", "ece", "eer", "seconds")
        rows.sort(key=lambda r: (r[sort] is None, -(r[sort] or 0) if descending else (r[sort] or 0)))
    return rows


def format_comparison(summaries: list[RunSummary], sort: str | None = None) -> str:
    """One line per run, sorted by ``sort``."""
    rows = sorted_rows(summaries, sort)
    head = (f"{'head':<10} {'features':<24} {'split':<9} {'roc_auc ± std':>15} {'pooled':>7} {'95% CI (groups)':>21} "
            f"{'95% CI (videos)':>15} {'tta':>6} {'eer':>6} {'tpr@5%':>6} {'bal_acc':>7} {'f1':>6} {'logloss':>7} {'ece':>6} "
            f"{'threshold':<9} flags / run")
    lines = [head, "-" * len(head)]
    for r in rows:
        tta = _cell(r["tta_auc"]) if r["tta_auc"] is not None else "-"
        groups = f"{r['auc_95ci']} (n={r['n_groups']})" if r["auc_95ci"] else ""
        lines.append(
            f"{r['head']:<10} {r['features'][:24]:<24} {r['split']:<9} {_cell(r['roc_auc']) + ' ± ' + _cell(r['roc_auc_std']):>15} "
            f"{_cell(r['pooled_auc']):>7} {groups:>21} {r['auc_95ci_video']:>15} {tta:>6} {_cell(r['eer']):>6} "
            f"{_cell(r['tpr_at_fpr_0.05']):>6} {_cell(r['balanced_accuracy']):>7} {_cell(r['f1']):>6} "
            f"{_cell(r['log_loss']):>7} {_cell(r['ece']):>6} {r['threshold_rule']:<9} {(r['flags'] + ' ') if r['flags'] else ''}{r['run']}"
        )
    return "\n".join(lines)


def is_run(path: Path) -> bool:
    return (path / "summary.json").is_file()


def find_runs(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """The run folders among ``paths`` (a run folder, or a folder of runs: its runs, one
    level down), and what was skipped: files (a comparison's own CSV and markdown), folders
    holding no run (a sweep's tables). So ``runs compare runs/*`` and ``runs compare runs``
    keep working after compares and sweeps have written beside the runs."""
    found, skipped = [], []
    for given in map(Path, paths):
        if is_run(given):
            found.append(given)
        elif given.is_dir():
            inside = sorted(child for child in given.iterdir() if child.is_dir() and is_run(child))
            found += inside
            if not inside:
                skipped.append(given)
        elif given.exists():
            skipped.append(given)
        else:
            raise RunError(f"{given} does not exist")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise RunError(f"no run folder (one with summary.json) among {', '.join(map(str, paths))}")
    return unique, skipped


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
