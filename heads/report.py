"""The run's plots and its one-page report.html.

The page opens with what decides how to read it: the backbone's weights (random weights
make embeddings meaningless), warnings (worse than chance, degenerate threshold), fold
sizes and class balance, and intervals that resample groups. Plots (PNG): ROC and PR
curves per fold and pooled, a reliability diagram, the confusion matrix at the folds'
thresholds, the score histogram per class, training curves (mean ± one standard
deviation over the folds' fits, per stage), and feature importance for heads that have
one (gbm). Then the most confident mistakes, with their paths and, when the video can
be read, a contact sheet of what the model saw.
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

from vidstore.heads.metrics import METRIC_NAMES, reliability_curve  # noqa: E402

PLOTS = ("roc.png", "pr.png", "reliability.png", "confusion.png", "scores.png", "curves.png", "importance.png")
MISTAKES_SHOWN = 10


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


def curve_bands(curves: list[dict], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per kind of fit (``inner``: the inner folds' fits, ``fit``: the inner hold-out's),
    at each step: the mean of ``key`` over the fits that reached it, its standard
    deviation, and how many fits there were. Early-stopped fits end at different steps:
    only steps that at least half of the fits reached are kept, so the mean does not jump
    as the worse fits stop."""
    out = {}
    watched = [c for c in curves if c.get("stage") != "refit" and key in c]
    if not watched:
        return out
    step = "epoch" if "epoch" in watched[0] else "round"
    for kind in ("inner", "fit"):
        mine = [c for c in watched if c["stage"].startswith(kind)]
        if not mine:
            continue
        n_fits = len({(c["fold"], c["stage"]) for c in mine})
        per_step: dict = {}
        for c in mine:
            per_step.setdefault(c[step], []).append(c[key])
        steps = np.array(sorted(x for x, v in per_step.items() if 2 * len(v) >= n_fits))
        mean = np.array([np.mean(per_step[x]) for x in steps.tolist()])
        std = np.array([np.std(per_step[x]) for x in steps.tolist()])
        out[kind] = (steps, mean, std, n_fits)
    return out


def _curves(curves: list[dict], out: Path) -> str | None:
    watched = [c for c in curves if c.get("stage") != "refit"]  # the fits that watched held-out rows
    if not watched:
        return None
    step = "epoch" if "epoch" in watched[0] else "round"
    fig, ax = plt.subplots(figsize=(6, 4))
    names = {"inner": "inner-fold fits", "fit": "fold fits"}
    for key, style, what in (("watch_loss", "-", "held out"), ("train_loss", "--", "training rows")):
        for kind, (xs, mean, std, n) in curve_bands(watched, key).items():
            line, = ax.plot(xs, mean, ls=style, lw=1.5, label=f"{what}, {names[kind]} (mean of {n})")
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel=step, ylabel="log-loss", title=f"training curves: mean ± 1 sd over the folds' fits\n(each {step} reached by at least half of them)")
    ax.legend(fontsize=7)
    return _save(fig, out / "curves.png")


def _scores(oof, out: Path) -> str:
    """Histogram of the probability of fake, per true class, with the mean threshold."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    bins = np.linspace(0, 1, 21)
    labels, probs = oof["label"].to_numpy(), oof["prob"].to_numpy()
    for cls, name, colour in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
        ax.hist(probs[labels == cls], bins=bins, alpha=0.55, color=colour, label=f"{name} ({int(np.sum(labels == cls))})")
    ax.axvline(float(np.mean(oof["threshold"].to_numpy())), color="black", ls="--", lw=1, label="threshold (mean)")
    ax.set(xlabel="predicted probability of fake", ylabel="videos", title="scores per class")
    ax.legend(fontsize=7)
    return _save(fig, out / "scores.png")


def confident_mistakes(oof, n: int = MISTAKES_SHOWN):
    """The ``n`` wrongly called videos whose probability is furthest from their label."""
    import polars as pl

    called = (oof["prob"] >= oof["threshold"]).cast(pl.Int64)
    wrong = oof.filter(called != oof["label"].cast(pl.Int64))
    return wrong.with_columns((wrong["prob"] - wrong["label"]).abs().alias("error")).sort("error", descending=True).head(n)


def _mistakes(oof, run_dir: Path, paths: dict[str, str] | None, sheet_config) -> str:
    """An HTML table of the most confident mistakes; a contact sheet for each readable video."""
    mistakes = confident_mistakes(oof)
    if mistakes.height == 0:
        return "<p>No video was called wrongly.</p>"
    rows = []
    for r in mistakes.iter_rows(named=True):
        path = (paths or {}).get(r["video_id"])
        sheet = ""
        if path and sheet_config is not None and Path(path).is_file():
            try:
                from vidstore.extract.contact_sheet import write_contact_sheet

                png, _ = write_contact_sheet(path, sheet_config, run_dir / "mistakes", video_id=r["video_id"])
                sheet = f'<img class=sheet src="mistakes/{html.escape(png.name)}" alt="contact sheet">'
            except Exception as err:  # a report must not fail over one unreadable video
                sheet = f"(no contact sheet: {html.escape(str(err)[:80])})"
        rows.append(
            f"<tr><td>{html.escape(str(r['video_id']))}</td><td>{html.escape(str(r.get('group', '')))}</td>"
            f"<td>{'fake' if r['label'] else 'real'}</td><td>{_fmt(r['prob'])}</td><td>{_fmt(r['threshold'])}</td>"
            f"<td>{html.escape(path or 'path unknown')}</td><td>{sheet}</td></tr>"
        )
    return ("<table><tr><th>video</th><th>group</th><th>label</th><th>prob fake</th><th>threshold</th><th>path</th><th>what the model saw</th></tr>"
            + "".join(rows) + "</table>")


def _importance(top: list, out: Path) -> str | None:
    if not top:
        return None
    names, gains = zip(*top[:20][::-1])
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(names) + 1))
    ax.barh(range(len(names)), gains, color="steelblue")
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="mean gain over the fold models", title="feature importance")
    return _save(fig, out / "importance.png")


def _setup_line(summary) -> str:
    counts = f"({summary.class_counts['real']} real, {summary.class_counts['fake']} fake)"
    if summary.split == "external":
        return (f"{summary.n_videos} evaluation videos {counts}, scale {summary.scale}, scored by {summary.n_folds} model(s) "
                f"(calibration {summary.calibration}, threshold rule {html.escape(summary.threshold_rule)}); {summary.seconds} s. "
                f"Features: {html.escape(str(summary.store))}.")
    return (f"{summary.n_videos} validation videos {counts}, {summary.n_rows} store rows ({summary.n_variants} variants a video), "
            f"scale {summary.scale}, {summary.split} {summary.n_folds}-fold, seed {summary.seed}, calibration {summary.calibration}, "
            f"threshold rule {html.escape(summary.threshold_rule)}; {summary.seconds} s. Store: {html.escape(str(summary.store))}.")


def _weights_line(summary) -> str:
    weights = ((summary.store_provenance or {}).get("backbone") or {}).get("weights") or {}
    source = weights.get("source")
    if source == "random":
        return ("<p class=warn>Backbone weights: <b>random</b> (not pretrained). Embeddings and maps carry little; "
                "only handcrafted statistics are meaningful here.</p>")
    if source == "kinetics400":
        return f"<p>Backbone weights: <b>Kinetics-400</b> ({html.escape(str(weights.get('origin', '')))}, sha256 {str(weights.get('sha256', ''))[:12]}).</p>"
    return f"<p>Backbone weights: {html.escape(str(source or 'not recorded'))}.</p>"


def _fold_table(summary) -> str:
    folds = summary.folds or []
    if not folds:
        return ""
    keys = [k for k in ("train_videos", "train_real", "train_fake", "threshold_videos", "val_videos", "val_real", "val_fake",
                        "inner_best_rounds", "refit_rounds", "best_epoch") if any(k in f for f in folds)]
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    body = "".join(
        f"<tr><td>{f.get('fold', '')}</td>" + "".join(f"<td>{html.escape(str(f.get(k, '')))}</td>" for k in keys) + "</tr>" for f in folds
    )
    return f"<h2>Folds: sizes and class balance</h2><table><tr><th>fold</th>{head}</tr>{body}</table>"


def _interval_table(summary) -> str:
    iv = summary.intervals or {}
    if not iv.get("by_group"):
        return "<p>No bootstrap intervals (train.bootstrap=0).</p>"
    rows = "".join(
        f"<tr><td>{m}</td><td>{_fmt(summary.pooled.get(m))}</td><td><b>{_fmt(g[0])} to {_fmt(g[1])}</b></td>"
        f"<td>{_fmt(v[0])} to {_fmt(v[1])}</td></tr>"
        for m in iv["by_group"]
        for g, v in [(summary.interval(m, "group"), summary.interval(m, "video"))]
    )
    return (f"<table><tr><th>metric</th><th>pooled</th><th>95 % by group (n_groups={iv['n_groups']})</th>"
            f"<th>95 % by video (n={iv['n_videos']}; too narrow when groups hold near-duplicates)</th></tr>{rows}</table>")


def write_report(run_dir: Path, summary, oof, curves: list[dict], *, paths: dict[str, str] | None = None, sheet_config=None) -> Path:
    """``run_dir/report.html`` and its plots. ``paths`` (video_id -> file) names the
    mistakes' videos; with ``sheet_config`` (the clip pipeline) each readable one gets a
    contact sheet."""
    plots = _roc_pr(oof, run_dir)
    plots += [_reliability(oof, run_dir), _confusion(oof, run_dir), _scores(oof, run_dir)]
    plots += [p for p in (_curves(curves, run_dir), _importance(summary.top_features, run_dir)) if p]
    rows = "".join(
        f"<tr><td>{name}</td><td>{_fmt(summary.metrics[name]['mean'])} ± {_fmt(summary.metrics[name]['std'])}</td>"
        + "".join(f"<td>{_fmt(v)}</td>" for v in summary.metrics[name]["per_fold"])
        + f"<td>{_fmt(summary.pooled[name])}</td></tr>"
        for name in METRIC_NAMES
    )
    folds = "".join(f"<th>fold {i}</th>" for i in range(len(summary.metrics["roc_auc"]["per_fold"])))
    warning = "<p class=warn>Naive row-level split: variants and near-duplicates cross folds; these scores are inflated.</p>" if summary.split == "naive" else ""
    shuffled = "<p class=warn>Labels shuffled across groups (permutation check): scores should be at chance.</p>" if summary.shuffle_labels else ""
    warnings = "".join(f"<p class=warn>{html.escape(w)}</p>" for w in summary.warnings or [])
    audit = summary.split_audit
    if summary.split == "external":
        ev = summary.evaluated or {}
        how = (f"External evaluation: {summary.n_videos} videos of {html.escape(str(ev.get('samples')))} scored by "
               f"{html.escape(str(ev.get('model')))} ({html.escape(str(ev.get('scored_by', '')))}); "
               f"left out because they are also in the training data: {ev.get('n_overlap', 0)}.")
    else:
        how = (f"Split audit: {audit['n_groups']} groups; groups in two folds: {audit['leaking_groups']}; "
               f"videos in two folds: {audit['leaking_videos']}.")
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
.warn{{color:#a00;font-weight:bold}}figure{{display:inline-block;margin:0.5em}}img{{max-width:520px}}img.sheet{{max-width:360px}}</style></head><body>
<h1>{html.escape(summary.head)} on {html.escape(summary.reads)}: {html.escape(summary.run_id)}</h1>
{_weights_line(summary)}
{warning}{shuffled}{warnings}
<p>{_setup_line(summary)}</p>
<p>{how}</p>
{_fold_table(summary)}
<h2>Metrics (video level, original clips)</h2>
<table><tr><th>metric</th><th>mean ± std</th>{folds}<th>pooled</th></tr>{rows}
<tr><td>threshold</td><td></td>{''.join(f'<td>{_fmt(t)}</td>' for t in summary.thresholds)}<td></td></tr></table>
<h3>Pooled 95 % intervals (bootstrap)</h3>{_interval_table(summary)}
<p>{'Test-time average over variants: pooled ROC-AUC ' + _fmt(summary.tta['pooled']['roc_auc']) + ' (reported apart).' if summary.tta else ''}</p>
<h2>Plots</h2>{images}
<h2>The {MISTAKES_SHOWN} most confident mistakes</h2>{_mistakes(oof, run_dir, paths, sheet_config)}
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
