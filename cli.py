"""vidstore: a video feature store with lightweight heads, for telling real videos from fake.

    vidstore demo                                   # the whole job on built-in data
    vidstore demo-data OUT [--videos N] [--seed S]  # make the built-in dataset
    vidstore index SOURCE... --out samples.parquet [--videos DIR]
    vidstore extract --samples samples.parquet --store features/NAME.zarr [--config fvc|FILE.yaml]
    vidstore clips VIDEO [--out DIR]                # contact sheet: variants x sampled frames
    vidstore store info|validate STORE              # describe / check a store
    vidstore store init --samples S --store STORE  # create or grow a store (before array jobs)
    vidstore train HEAD --store STORE [--folds 5] [--seed 0] [--out runs] [--head-module my_head.py]
    vidstore runs compare RUN... [--sort roc_auc] [--out table]
    vidstore sweep HEAD --store STORE --grid gbm|FILE.yaml [--nested]
    vidstore config show [-c FILE] [--set key=value]   # the resolved config
    vidstore finetune --samples samples.parquet --init runs/<inception run> --out models/NAME [--resume]
    vidstore predict MODEL_OR_RUN VIDEO_OR_DIR [--out preds.csv] [--tta] [--use-export pt2|onnx]
    vidstore evaluate MODEL_OR_RUN --samples OTHER.parquet [--store STORE] --out DIR   # another labelled dataset

Options before the command: --progress auto|bar|lines|off (auto: a bar on a terminal, else a
plain line every --progress-every seconds), -v (debug lines: every epoch), -q (warnings,
errors and results only). Results go to stdout, progress and logs to stderr.

HEAD is any registered head (``train --help`` lists them): gbm, logreg, inception, or one
from ``--head-module FILE.py`` or a ``vidstore.heads`` entry point.
Every command takes ``--config FILE`` and ``--set section.key=value`` where it has knobs;
``configs/default.yaml`` lists them all. Commands are thin: the work lives in extract/,
store/ and heads/.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Literal, Optional

import typer
from typer.core import TyperCommand


def use_checkout() -> None:
    """Make the folder this file is in the ``vidstore`` package, whatever else is installed:
    ``python cli.py`` from a checkout, and the tests and benchmarks (which ``import cli``),
    run this checkout's code. An installed vidstore (``vidstore`` command) never calls it."""
    import importlib.util

    root = Path(__file__).resolve().parent
    loaded = sys.modules.get("vidstore")
    if loaded is not None and Path(loaded.__file__).resolve().parent == root:
        return
    spec = importlib.util.spec_from_file_location("vidstore", root / "__init__.py", submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["vidstore"] = package
    spec.loader.exec_module(package)


if not __package__:  # run or imported as a file, not as vidstore.cli
    use_checkout()

from vidstore.configs import Config, load_config  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.split("\n")[0])
store_app = typer.Typer(no_args_is_help=True, help="Inspect a feature store.")
app.add_typer(store_app, name="store")

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="a YAML file, or a config installed with vidstore by name (demo, fvc), merged over the defaults")
SET_OPTION = typer.Option([], "--set", help="override one key, e.g. --set clip.frames=8 (repeatable)")
HEAD_MODULE_OPTION = typer.Option([], "--head-module", help="a Python file that registers heads of your own (repeatable)")


def _config(path: Optional[str], overrides: list[str], extra: list[str] = ()) -> Config:
    return load_config(path, list(overrides) + list(extra))


def _print_version(value: bool) -> None:
    if value:
        import vidstore

        typer.echo(f"vidstore {vidstore.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    progress: Optional[Literal["auto", "bar", "lines", "off"]] = typer.Option(
        None, "--progress", envvar="VIDSTORE_PROGRESS",
        help="auto (the default; off with -q): a bar on a terminal, else a plain line every --progress-every seconds "
             "(logs, SLURM); bar; lines; off",
    ),
    progress_every: float = typer.Option(30.0, "--progress-every", min=0, envvar="VIDSTORE_PROGRESS_EVERY",
                                         help="seconds between two progress lines (lines mode); a last line always ends a loop"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also debug lines: every epoch of the inception head, fold sizes, a nested sweep's inner folds"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only warnings, errors and the command's results (stdout)"),
) -> None:
    """vidstore: a video feature store with lightweight heads, for telling real videos from fake.

    Results go to stdout; progress and log lines to stderr. Options before the command:
    ``vidstore -q --progress lines extract ...``.
    """
    import logging

    from vidstore.extract.progress import configure_progress, setup_logging

    if verbose and quiet:
        raise typer.BadParameter("-v and -q exclude each other", param_hint="-v/-q")
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    configure_progress(progress or ("off" if quiet else "auto"), progress_every)


def _load_head_modules(paths: list[Path]) -> None:
    if paths:
        from vidstore.heads.registry import load_head_module

        for path in paths:
            load_head_module(path)


def _argv_head_modules() -> list[Path]:
    args = sys.argv
    return [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--head-module"]


class ListsHeads(TyperCommand):
    """A command whose --help ends with the registered heads (built-in, entry points and --head-module)."""

    def format_help(self, ctx, formatter) -> None:
        from vidstore.heads.registry import head_names

        _load_head_modules(_argv_head_modules())
        self.help = (self.help or "").split("\n\nRegistered heads:")[0] + f"\n\nRegistered heads: {', '.join(head_names())}"
        super().format_help(ctx, formatter)


# -- the demo ---------------------------------------------------------------------------------


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="folder to write the videos and labels.csv into"),
    videos: Optional[int] = typer.Option(None, help="number of published videos (default: demo.videos)"),
    seed: Optional[int] = typer.Option(None, help="random seed; the same seed gives the same dataset"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
) -> None:
    """Make the built-in labelled demo dataset (procedural real scenes and manipulated fakes)."""
    extra = [f"demo.{k}={v}" for k, v in {"videos": videos, "seed": seed}.items() if v is not None]
    d = _config(config, overrides, extra).demo
    labels = _make_demo_data(out, d)
    typer.echo(f"wrote {d.videos} videos and {labels}")


def _make_demo_data(out: Path, d) -> Path:
    from vidstore.extract.demo_data import make_demo_dataset

    return make_demo_dataset(out, n_videos=d.videos, seed=d.seed, width=d.width, height=d.height, n_frames=d.n_frames, fps=d.fps, progress=True)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="folder for the dataset, samples, store and runs"),
    config: str = typer.Option("demo", "--config", "-c", help="a YAML file, or a packaged config by name"),
    overrides: list[str] = SET_OPTION,
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """The whole job on the built-in dataset: demo-data -> index -> extract -> train gbm."""
    from vidstore.extract.demo_data import GENERATOR_VERSION
    from vidstore.extract.job import StoreMismatch, run_extract
    from vidstore.extract.sources import build_index, write_index
    from vidstore.heads.registry import head_class
    from vidstore.heads.runs import format_comparison, format_summary
    from vidstore.heads.train import train_head

    _load_head_modules(head_module)
    cfg = _config(config, overrides, [f"train.out={out / 'runs'}"])
    if cfg.train.tensorboard:
        from vidstore.heads.tensorboard_events import require_tensorboard

        require_tensorboard("train.tensorboard")  # before the dataset and the store are made
    started = time.perf_counter()
    data_dir, samples, store = out / "data", out / "samples.parquet", out / "features.zarr"

    typer.echo(f"[1/4] demo dataset -> {data_dir}")
    d = cfg.demo
    marker = data_dir / "demo.json"
    wanted = {
        "generator_version": GENERATOR_VERSION, "seed": d.seed, "n_videos": d.videos,
        "width": d.width, "height": d.height, "n_frames": d.n_frames, "fps": d.fps,
    }
    if marker.is_file() and {k: json.loads(marker.read_text()).get(k) for k in wanted} == wanted:
        typer.echo("      already there (same parameters), reused")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        _make_demo_data(data_dir, d)

    typer.echo(f"[2/4] index -> {samples}")
    table, summary = build_index([data_dir], progress=True)
    write_index(table, samples)
    for line in summary.lines():
        typer.echo("      " + line)

    typer.echo(f"[3/4] extract -> {store}")
    try:
        report = run_extract(samples, store, cfg)
    except StoreMismatch as err:
        typer.echo(f"      {err}; the demo store is rebuilt")
        shutil.rmtree(store)
        report = run_extract(samples, store, cfg)
    _print_extract_report(report)

    features = "+".join(cfg.train.features)
    typer.echo(f"[4/4] train gbm on {features} (grouped stratified {cfg.train.folds}-fold), then {', '.join(cfg.demo.also_train)}")
    run_dir, result = train_head("gbm", store, cfg)
    others = []
    for spec in cfg.demo.also_train:
        head, _, arrays = spec.partition(":")
        reads_map = head_class(head).inputs == "map"
        update = {"tap": arrays} if reads_map else {"features": arrays.split("+")}
        other = cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})
        others.append(train_head(head, store, other)[1])
    typer.echo(format_summary(result))
    typer.echo("")
    typer.echo(format_comparison([result, *others]))
    if cfg.backbone.weights == "random":
        typer.echo("(backbone weights are random here: embeddings and maps mean little; use backbone.weights=kinetics400 on real data)")
    typer.echo(f"open {run_dir / 'report.html'} for the plots")
    typer.echo(f"\ndone in {time.perf_counter() - started:.0f} s")
    typer.echo(f"  dataset  {data_dir}\n  samples  {samples}\n  store    {store}  (vidstore store info {store})\n  runs     {run_dir.parent}")


# -- the steps --------------------------------------------------------------------------------


@app.command()
def index(
    sources: list[Path] = typer.Argument(..., help="dataset folder, labels CSV, or FVC metadata CSV(s)"),
    out: Path = typer.Option(..., "--out", "-o", help="samples table to write (parquet)"),
    videos: Optional[Path] = typer.Option(None, help="folder of downloaded videos (FVC metadata only)"),
    allow_outside: bool = typer.Option(False, help="accept CSV paths outside the CSV's folder (their ids are then absolute paths)"),
) -> None:
    """Index labelled videos into a samples table, probing every file (ids: paths relative to the
    indexed folder or the CSV's folder, extension included; FVC: platform_id)."""
    from vidstore.extract.sources import build_index, write_index

    table, summary = build_index(sources, videos_dir=videos, progress=True, allow_outside=allow_outside)
    write_index(table, out)
    for line in summary.lines():
        typer.echo(line)
    failed = table.filter(table["status"] == "failed")
    for row in failed.head(5).iter_rows(named=True):
        typer.echo(f"  failed: {row['path']}: {row['reason']}")
    typer.echo(f"wrote {out}")


def _print_extract_report(report) -> None:
    who = f" (rank {report.rank} of {report.world})" if report.world > 1 else ""
    if report.shards_held_elsewhere:
        held = report.shards_held_elsewhere
        typer.echo(f"      {len(held)} shards skipped: another process holds or finished them (e.g. shard {held[0]})")
    if report.clips == 0 and report.n_failed == 0 and not report.shards_held_elsewhere:
        typer.echo(f"      nothing to do{who}: all {report.n_skipped} videos already in {report.store}")
        return
    typer.echo(
        f"      {report.n_done} videos extracted, {report.n_failed} failed, {report.n_skipped} already done{who}; "
        f"{report.clips} clips in {report.seconds:.1f} s ({report.clips_per_second:.2f} clips/s), "
        f"{report.shards_written} shards written"
    )
    if report.decoder == "nvdec":
        on_gpu, on_cpu = report.decoded_by.get("nvdec", 0), report.decoded_by.get("cpu", 0)
        typer.echo(f"      decoded on NVDEC: {on_gpu} videos; on the CPU: {on_cpu} (streams NVDEC cannot take)")
    for video_id, reason in report.failures[:5]:
        typer.echo(f"      failed: {video_id}: {reason}")


@app.command()
def extract(
    samples: Path = typer.Option(..., help="samples table from `index`"),
    store: str = typer.Option(..., help="feature store to create or continue (a path or an fsspec URL)"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N (default: extract.device); cuda is cuda:LOCAL_RANK under torchrun"),
    shard: Optional[str] = typer.Option(
        None, help="this writer's share as i/n (default: torchrun's RANK/WORLD_SIZE or a SLURM array's task)"
    ),
    verify: bool = typer.Option(False, help="read this rank's done shards back first; recompute those that differ from their checksums"),
) -> None:
    """Run the backbone over every indexed video and fill the feature store (resumable;
    several ranks can fill one store)."""
    from vidstore.extract.job import run_extract

    extra = [f"extract.device={device}"] if device else []
    extra += ["extract.verify=true"] if verify else []
    cfg = _config(config, overrides, extra)
    report = run_extract(samples, store, cfg, shard=shard)
    _print_extract_report(report)


@app.command()
def clips(
    video: Path = typer.Argument(..., help="a video file"),
    out: Path = typer.Option(Path("clips"), help="folder for the PNG and JSON"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    video_id: Optional[str] = typer.Option(None, help="the id the variants are seeded with (default: the file name's stem)"),
    variants: Optional[int] = typer.Option(None, help="augmented variants to show (default: augment.variants)"),
) -> None:
    """Write a contact sheet of a video's clips: rows = variants, columns = sampled frames."""
    from vidstore.extract.contact_sheet import write_contact_sheet
    from vidstore.extract.sources import SourceError
    from vidstore.extract.video import VideoError

    extra = [f"augment.variants={variants}"] if variants is not None else []
    cfg = _config(config, overrides, extra)
    try:
        png, params = write_contact_sheet(video, cfg, out, video_id=video_id)
    except VideoError as err:
        raise SourceError(f"cannot read {video}: {err}") from None
    typer.echo(f"wrote {png} and {params}")


@store_app.command("init")
def store_init(
    samples: Path = typer.Option(..., help="samples table from `index`"),
    store: str = typer.Option(..., help="feature store to create, or to grow by the samples it lacks"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
) -> None:
    """Create (or grow) a store without computing: run once before a SLURM array of extracts."""
    from vidstore.extract.job import init_store

    made = init_store(samples, store, _config(config, overrides))
    layout = made.layout
    typer.echo(f"store {store}: {made.n_rows} rows, {layout.n_videos} videos in {layout.n_shards} shards of {layout.shard_videos}")


@store_app.command("validate")
def store_validate(path: str = typer.Argument(..., help="feature store")) -> None:
    """Check schema, shapes, markers, and that every done shard reads back equal to its marker's
    checksums and finite; exit 1 on a problem (`extract --verify` recomputes such shards)."""
    from vidstore.store import FeatureStore, validate_store

    report = validate_store(FeatureStore.open(path))
    counts = ", ".join(f"{k} {v}" for k, v in report.rows_by_status.items())
    typer.echo(f"store {path}: {report.shards_checked} done shards checked; rows: {counts}")
    if report.unchecked_shards:
        typer.echo(f"  note: {report.unchecked_shards} markers predate checksums; their data was checked for finiteness only")
    for text in report.problems:
        typer.echo(f"  problem: {text}")
    if not report.ok:
        typer.echo(f"{len(report.problems)} problem(s) found; `extract --verify` recomputes the shards concerned", err=True)
        raise typer.Exit(1)
    typer.echo("ok")


@store_app.command("info")
def store_info(
    path: str = typer.Argument(..., help="feature store (a path or an fsspec URL)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Rows, arrays (shape, chunks, codec, size on disk, compression) and provenance."""
    from vidstore.store import FeatureStore

    opened = FeatureStore.open(path)
    info = opened.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    sh = info["shards"]
    typer.echo(
        f"store {info['path']}: {info['n_rows']} rows ({', '.join(f'{k} {v}' for k, v in info['rows_by_status'].items())}); "
        f"{sh['done']} of {sh['n']} shards done ({sh['videos_per_shard']} videos, {sh['rows_per_shard']} rows each)"
    )
    for a in info["arrays"]:
        ratio = f"{a['compression_ratio']:.2f}x" if a["compression_ratio"] else "n/a"
        typer.echo(
            f"  {a['path']:<18} {str(tuple(a['shape'])):<24} {a['dtype']:<8} chunks {str(tuple(a['chunks'])):<22} "
            f"{a['compressor']:<38} {a['files']:>4} files {a['stored_bytes'] / 2**20:8.2f} MiB  ratio {ratio}"
        )
    p = opened.provenance
    weights = p.weights
    typer.echo(f"  backbone {p.backbone_name} weights {weights.get('source')} ({weights.get('origin')}, sha256 {str(weights.get('sha256'))[:12]})")
    typer.echo(f"  preprocessing {json.dumps(p.preprocessing.get('clip'))} hash {p.preprocessing_hash}")
    typer.echo(f"  schema v{p.version}, code {p.code_version}, created {p.created_at}")


@app.command(cls=ListsHeads)
def train(
    head: str = typer.Argument(..., help="a registered head (listed below)"),
    store: str = typer.Option(..., help="feature store (a path or an fsspec URL: file://, s3://, memory:// ...)"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    scale: Optional[int] = typer.Option(None, help="store scale to read (default: the largest)"),
    folds: Optional[int] = typer.Option(None, help="number of folds (default: train.folds)"),
    seed: Optional[int] = typer.Option(None, help="split and model seed (default: train.seed)"),
    out: Optional[Path] = typer.Option(None, help="runs folder (default: train.out)"),
    split: str = typer.Option("grouped", help="grouped (honest) or naive (row-level, leaks: for comparison only)"),
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Cross-validate a head on the store and write runs/<run-id>/."""
    from vidstore.heads.runs import format_summary
    from vidstore.heads.train import train_head

    _load_head_modules(head_module)
    extra = [f"train.{k}={v}" for k, v in {"scale": scale, "folds": folds, "seed": seed, "out": out}.items() if v is not None]
    cfg = _config(config, overrides, extra)
    run_dir, summary = train_head(head, store, cfg, split=split)
    typer.echo(format_summary(summary))
    typer.echo(f"wrote {run_dir}")


@app.command()
def finetune(
    samples: Path = typer.Option(..., help="samples table from `index` (videos, labels, groups)"),
    init: Path = typer.Option(..., help="an inception run (its best fold's head) or a model folder to continue"),
    out: Path = typer.Option(..., help="model folder to write (models/NAME)"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt"),
    final_from: Optional[Path] = typer.Option(
        None, help="a model trained with a hold-out: train on every video for its best epoch count, keep its threshold"
    ),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N (default: finetune.device); cuda is cuda:LOCAL_RANK under torchrun"),
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Fine-tune backbone + a map head (Inception3D) end to end (torchrun for several GPUs)."""
    from vidstore.heads.finetune import finetune as run_finetune

    _load_head_modules(head_module)
    cfg = _config(config, overrides, [f"finetune.device={device}"] if device else [])
    result = run_finetune(samples, init, out, cfg, resume=resume, final_from=final_from)
    if result["status"] == "interrupted":
        typer.echo(f"stopped at epoch {result['epoch']}, step {result['global_step']}; checkpoint in {out}; continue with --resume")
        return
    if int(os.environ.get("RANK", 0)) == 0:
        holdout = result.get("holdout") or {}
        auc = holdout.get("roc_auc")
        typer.echo(
            f"fine-tuned {result['epochs_run']} epochs (best {result['best_epoch']}); hold-out ROC-AUC "
            f"{'n/a' if auc is None else f'{auc:.3f}'}, threshold {result['threshold']:.3f}; wrote {out}"
        )
        for kind, entry in result.get("exports", {}).items():
            diff = entry["max_abs_diff"]
            typer.echo(f"  {entry['file']}: " + (entry["checked_with"] if diff is None else
                                                  f"logits within {diff:.1e} of the eager model's ({entry['checked_with']})"))


@app.command()
def predict(
    model: Path = typer.Argument(..., help="a model folder (finetune) or a run folder (train)"),
    target: Path = typer.Argument(..., help="a video or a folder of videos"),
    out: Optional[Path] = typer.Option(None, help="write the predictions as CSV"),
    tta: bool = typer.Option(False, help="average over the augmented variants of each video"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    workers: int = typer.Option(2, help="decode processes"),
    batch_size: int = typer.Option(32, help="clips per forward pass, gathered across videos"),
    samples: Optional[Path] = typer.Option(None, help="samples table naming the videos' ids (variants are seeded by id; default: the path relative to the folder given, as in index)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    use_export: Optional[str] = typer.Option(
        None, help="pt2 or onnx: score a model folder with that export of it (default: weights.pt, or an export where it is absent)"
    ),
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Probability of fake for each video: path, video_id, prob_fake, pred_label (fake at or above the threshold), n_clips, status, reason."""
    import polars as pl

    from vidstore.heads.predict import predict as run_predict

    _load_head_modules(head_module)
    table = run_predict(model, target, _config(config, overrides), tta=tta, workers=workers, batch_size=batch_size, samples=samples,
                        device=device, use_export=use_export)
    with pl.Config(tbl_rows=50, tbl_width_chars=160, fmt_str_lengths=60):
        typer.echo(table.select("video_id", "prob_fake", "pred_label", "n_clips", "status", "reason"))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.write_csv(out)
        typer.echo(f"wrote {out}")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="a run folder (train) or a model folder (finetune)"),
    samples: Path = typer.Option(..., help="labelled samples table of the evaluation set (`index`)"),
    out: Path = typer.Option(..., help="folder to write summary.json, oof.parquet, overlap.csv and report.html into"),
    store: Optional[str] = typer.Option(None, help="a store of these videos extracted with the run's preprocessing (default: compute features from the videos)"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    workers: int = typer.Option(2, help="decode processes (when features are computed from the videos)"),
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Score a run or model on a second labelled dataset; videos also in its training data are left out."""
    from vidstore.heads.evaluate import evaluate as run_evaluate
    from vidstore.heads.runs import format_summary

    _load_head_modules(head_module)
    folder, summary = run_evaluate(model, samples, out, _config(config, overrides), store=store, workers=workers)
    typer.echo(format_summary(summary))
    typer.echo(f"wrote {folder} (vidstore runs compare {model} {folder})")


runs_app = typer.Typer(no_args_is_help=True, help="Look at trained runs.")
app.add_typer(runs_app, name="runs")


@runs_app.command("compare")
def runs_compare(
    runs: list[Path] = typer.Argument(..., help="run folders (runs/<run-id>), or folders of runs (runs/); anything else is skipped"),
    sort: str = typer.Option("roc_auc", help="column to sort by, best first"),
    out: Optional[Path] = typer.Option(None, help="also write OUT.csv and OUT.md"),
) -> None:
    """Print trained runs side by side (and write them as CSV and markdown)."""
    from vidstore.heads.runs import find_runs, format_comparison, load_summaries, write_comparison

    found, skipped = find_runs(runs)
    if skipped:
        names = ", ".join(str(path) for path in skipped[:4]) + (f" and {len(skipped) - 4} more" if len(skipped) > 4 else "")
        typer.echo(f"skipped {len(skipped)} path(s) that are not runs: {names}", err=True)
    summaries = load_summaries(found)
    typer.echo(format_comparison(summaries, sort))
    if out:
        csv_path, md_path = write_comparison(summaries, out, sort)
        typer.echo(f"wrote {csv_path} and {md_path}")


@app.command(cls=ListsHeads)
def sweep(
    head: str = typer.Argument(..., help="a registered head (listed below)"),
    store: str = typer.Option(..., help="feature store (a path or an fsspec URL: file://, s3://, memory:// ...)"),
    grid: str = typer.Option(..., help="YAML file mapping dotted config keys to lists of values, or a packaged grid by name (gbm, inception)"),
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    nested: bool = typer.Option(False, help="also estimate the chosen point honestly (nested selection; heads that read vectors)"),
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Cross-validate every point of a grid, reading the store once; compare them."""
    from vidstore.heads.runs import format_comparison, write_comparison
    from vidstore.heads.sweep import run_sweep

    _load_head_modules(head_module)
    runs, summaries, estimate = run_sweep(head, store, grid, config=config, overrides=overrides, nested=nested)
    for run, summary in zip(runs, summaries):
        typer.echo(f"{run.name}: {summary.sweep_point}")
    typer.echo(format_comparison(summaries, "roc_auc"))
    csv_path, md_path = write_comparison(summaries, runs[0].parent / "sweeps" / runs[0].name, "roc_auc")  # not a run folder
    typer.echo(f"wrote {csv_path} and {md_path}")
    if estimate:
        auc = estimate["metrics"]["roc_auc"]
        typer.echo(
            f"nested estimate of the sweep's choice: roc_auc {auc['mean']:.3f} ± {auc['std']:.3f} (pooled {estimate['pooled']['roc_auc']:.3f}); "
            f"points chosen per outer fold: {estimate['chosen_point_per_fold']}. The best point's score above is optimistic."
        )


config_app = typer.Typer(no_args_is_help=True, help="Look at the configuration.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    config: Optional[str] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    head_module: list[Path] = HEAD_MODULE_OPTION,
) -> None:
    """Print the resolved config (schema defaults <- FILE <- --set) as YAML."""
    import yaml

    _load_head_modules(head_module)
    typer.echo(yaml.safe_dump(_config(config, overrides).to_dict(), sort_keys=False).rstrip())


# Errors a user can cause, printed as one line instead of a traceback. Checked by module
# name: an error class can only have been raised if its module was imported, so the
# check never imports torch just to print a message.
USER_ERRORS = {
    "vidstore.configs.schema": "ConfigError",
    "vidstore.extract.sources": "SourceError",
    "vidstore.extract.job": "ExtractError",
    "vidstore.store.feature_store": "StoreError",
    "vidstore.features.backbone": "WeightsError",
    "vidstore.features.device": "DeviceError",
    "vidstore.heads.registry": "HeadError",
    "vidstore.store.provenance": "ArtifactVersionError",
    "vidstore.heads.features_table": "HeadDataError",
    "vidstore.heads.splits": "SplitError",
    "vidstore.heads.runs": "RunError",
    "vidstore.heads.finetune": "FinetuneError",
    "vidstore.heads.export": "ExportError",
    "vidstore.heads.predict": "PredictError",
    "vidstore.heads.pipeline": "PipelineError",
    "vidstore.store.artifacts": "ArtifactError",
    "vidstore.heads.evaluate": "EvaluateError",
}


def is_user_error(err: BaseException) -> bool:
    for module, name in USER_ERRORS.items():
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(err, getattr(loaded, name)):
            return True
    return False


def os_error_line(err: OSError) -> str:
    """One line for an error of the machine a user can fix: a full disk, a missing or
    forbidden path."""
    import errno

    where = f" {err.filename}" if getattr(err, "filename", None) else ""
    text = (err.strerror or str(err).splitlines()[0]) if str(err) else type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device{where or ' being written'}: free some space and run the command again (extract resumes)"
    return f"{text}:{where}" if where else text


def main() -> None:
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        app()
    except Exception as err:
        if is_user_error(err):
            typer.echo(f"error: {err}", err=True)
            sys.exit(2)
        if isinstance(err, OSError) and err.errno is not None:
            typer.echo(f"error: {os_error_line(err)}", err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
