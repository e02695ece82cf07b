"""The run's plots and its one-page report.html.

Plots (PNG): ROC and PR curves per fold and pooled, a reliability diagram, the confusion
matrix at the folds' thresholds, training curves (per fold: loss on the training rows and
on the inner hold-out), and feature importance for heads that have one (gbm).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from heads.metrics import METRIC_NAMES, reliability_curve  # noqa: E402

PLOTS = ("roc.png", "pr.png", "reliability.png", "confusion.png", "curves.png", "importance.png")


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _roc_pr(oof, out: Path) -> list[str]:
    written = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(5, 4.5))
        for fold in sorted(oof["fold"].unique().to_list()):
            part = oof.filter(oof["fold"] == fold)
            y, p = part["label"].to_numpy(), part["prob"].to_numpy()
            if len(np.unique(y)) < 2:
                continue
            a, b, _ = roc_curve(y, p) if kind == "roc" else precision_recall_curve(y, p)
            ax.plot(a, b, lw=1, alpha=0.5, label=f"fold {fold}") if kind == "roc" else ax.plot(b, a, lw=1, alpha=0.5, label=f"fold {fold}")
        y, p = oof["label"].to_numpy(), oof["prob"].to_numpy()
        if len(np.unique(y)) == 2:
            if kind == "roc":
                fpr, tpr, _ = roc_curve(y, p)
                ax.plot(fpr, tpr, color="black", lw=2, label="pooled")
                ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
                ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation videos)")
            else:
                precision, recall, _ = precision_recall_curve(y, p)
                ax.plot(recall, precision, color="black", lw=2, label="pooled")
                ax.axhline(y.mean(), ls="--", color="grey", lw=1)
                ax.set(xlabel="recall", ylabel="precision", title="precision-recall (validation videos)")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"{kind}.png"))
    return written


def _reliability(oof, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    mean_p, rate, count = reliability_curve(oof["label"].to_numpy(), oof["prob"].to_numpy())
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.plot(mean_p, rate, marker="o", color="black")
    for x, y, n in zip(mean_p, rate, count):
        ax.annotate(str(n), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="mean predicted probability of fake", ylabel="observed share of fakes", title="reliability (n per bin)", xlim=(0, 1), ylim=(0, 1))
    return _save(fig, out / "reliability.png")


def _confusion(oof, out: Path) -> str:
    y = oof["label"].to_numpy()
    predicted = (oof["prob"].to_numpy() >= oof["threshold"].to_numpy()).astype(int)
    matrix = np.array([[np.sum((y == a) & (predicted == b)) for b in (0, 1)] for a in (0, 1)])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for a in (0, 1):
        for b in (0, 1):
            ax.text(b, a, str(matrix[a, b]), ha="center", va="center", fontsize=12)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="predicted", ylabel="label", title="confusion (fold thresholds)")
    return _save(fig, out / "confusion.png")


def _curves(curves: list[dict], out: Path) -> str | None:
    watched = [c for c in curves if c.get("stage") != "refit"]  # the fits that watched held-out rows
    if not watched:
        return None
    step = "epoch" if "epoch" in watched[0] else "round"
    fig, ax = plt.subplots(figsize=(6, 4))
    for fold, stage in sorted({(c["fold"], c["stage"]) for c in watched}):
        mine = [c for c in watched if c["fold"] == fold and c["stage"] == stage]
        xs = [c[step] for c in mine]
        name = f"fold {fold}" + ("" if stage == "fit" else f" {stage}")
        if "train_loss" in mine[0]:
            ax.plot(xs, [c["train_loss"] for c in mine], lw=1, ls="--", label=f"{name} train")
        if "watch_loss" in mine[0]:
            ax.plot(xs, [c["watch_loss"] for c in mine], lw=1.2, label=f"{name} held out")
    ax.set(xlabel=step, ylabel="log-loss", title="training curves (training-side held-out rows of each fold)")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, out / "curves.png")


def _importance(top: list, out: Path) -> str | None:
    if not top:
        return None
    names, gains = zip(*top[:20][::-1])
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(names) + 1))
    ax.barh(range(len(names)), gains, color="steelblue")
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="mean gain over the fold models", title="feature importance")
    return _save(fig, out / "importance.png")


def write_report(run_dir: Path, summary, result) -> Path:
    plots = _roc_pr(result.oof, run_dir)
    plots += [_reliability(result.oof, run_dir), _confusion(result.oof, run_dir)]
    plots += [p for p in (_curves(result.curves, run_dir), _importance(summary.top_features, run_dir)) if p]
    rows = "".join(
        f"<tr><td>{name}</td><td>{_fmt(summary.metrics[name]['mean'])} ± {_fmt(summary.metrics[name]['std'])}</td>"
        + "".join(f"<td>{_fmt(v)}</td>" for v in summary.metrics[name]["per_fold"])
        + f"<td>{_fmt(summary.pooled[name])}</td></tr>"
        for name in METRIC_NAMES
    )
    folds = "".join(f"<th>fold {i}</th>" for i in range(len(summary.thresholds)))
    warning = "<p class=warn>Naive row-level split: variants and near-duplicates cross folds; these scores are inflated.</p>" if summary.split != "grouped" else ""
    shuffled = "<p class=warn>Labels shuffled across groups (permutation check): scores should be at chance.</p>" if summary.shuffle_labels else ""
    audit = summary.split_audit
    ci = summary.roc_auc_95ci or [None, None]
    slices = "".join(
        f"<h3>by {html.escape(k)}</h3><table><tr><th>value</th><th>videos</th><th>fake</th><th>roc_auc</th><th>accuracy</th></tr>"
        + "".join(f"<tr><td>{html.escape(str(v))}</td><td>{m['videos']}</td><td>{m['fake']}</td><td>{_fmt(m['roc_auc'])}</td><td>{_fmt(m['accuracy'])}</td></tr>" for v, m in vals.items())
        + "</table>"
        for k, vals in (summary.slices or {}).items()
    )
    images = "".join(f'<figure><img src="{p}" alt="{p}"><figcaption>{p}</figcaption></figure>' for p in plots)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(summary.run_id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
.warn{{color:#a00;font-weight:bold}}figure{{display:inline-block;margin:0.5em}}img{{max-width:520px}}</style></head><body>
<h1>{html.escape(summary.head)} on {html.escape(summary.reads)}: {html.escape(summary.run_id)}</h1>
{warning}{shuffled}
<p>{summary.n_videos} validation videos ({summary.class_counts['real']} real, {summary.class_counts['fake']} fake),
{summary.n_rows} store rows ({summary.n_variants} variants a video), scale {summary.scale},
{summary.split} {summary.n_folds}-fold, seed {summary.seed}, calibration {summary.calibration};
{summary.seconds} s. Store: {html.escape(str(summary.store))}.</p>
<p>Split audit: {audit['n_groups']} groups; groups in two folds: {audit['leaking_groups']}; videos in two folds: {audit['leaking_videos']}.</p>
<h2>Metrics (video level, original clips)</h2>
<table><tr><th>metric</th><th>mean ± std</th>{folds}<th>pooled</th></tr>{rows}
<tr><td>threshold</td><td></td>{''.join(f'<td>{_fmt(t)}</td>' for t in summary.thresholds)}<td></td></tr></table>
<p>Pooled ROC-AUC 95 % interval (bootstrap over videos): {_fmt(ci[0])} to {_fmt(ci[1])}.
{'Test-time average over variants: pooled ROC-AUC ' + _fmt(summary.tta['pooled']['roc_auc']) + ' (reported apart).' if summary.tta else ''}</p>
<h2>Plots</h2>{images}
{'<h2>Slices</h2>' + slices if slices else ''}
<h2>Head</h2><pre>{html.escape(json.dumps(summary.head_info, indent=2))}</pre>
<p>Files: config.yaml, summary.json, oof.parquet, metrics.jsonl{', checkpoints/' if (run_dir / 'checkpoints').exists() else ''}.</p>
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and value != value) else f"{value:.3f}"
