"""Logs that read well: progress as plain lines (rate, ETA, no carriage returns) or nothing,
-q and -v, a line per epoch that says what the run's curves file says, and TensorBoard
events holding the same numbers."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, run_cli, write_rows
from vidstore.store import ArraySpec, FeatureStore

DEMO = ["--videos", "4", "--set", "demo.width=64", "--set", "demo.height=48", "--set", "demo.n_frames=8"]
# 3 folds of 24 videos, 3 epochs on a 8-channel map: a few seconds
TRAIN = ["--folds", "3", "--set", "train.inception.epochs=3", "--set", "train.inception.batch_size=8", "--set", "train.bootstrap=0"]
STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "
EPOCH = re.compile(STAMP + r"debug: \[heads\.zoo\.inception\] fold (\d+) (\w+) epoch (\d+)/3: loss ([\d.]+), hold-out loss ([\d.]+), "
                   r"AUC (\S+), lr (\S+), [\d.]+ s$")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """24 videos in 12 groups, 2 variants each; the label lights up 3 of 8 map channels."""
    path = tmp_path_factory.mktemp("logs") / "tiny.zarr"
    rng = np.random.default_rng(0)
    n, rpv = 24, 2
    groups = np.arange(n) // 2
    labels = groups % 2
    rows = pl.DataFrame({
        "video_id": np.repeat([f"v{i}" for i in range(n)], rpv), "group": np.repeat([f"g{g}" for g in groups], rpv),
        "label": np.repeat(labels, rpv), "variant": np.tile(np.arange(rpv), n), "platform": "youtube",
        "width": 640.0, "height": 360.0, "duration": 10.0,
    })
    store = FeatureStore.create(str(path), rows, {16: [ArraySpec("layer4", (8, 1, 2, 2))]}, rows_per_video=rpv, shard_videos=8)
    maps = rng.standard_normal((n * rpv, 8, 1, 2, 2)).astype(np.float32)
    maps[:, :3] += 1.5 * np.repeat(labels, rpv)[:, None, None, None, None]
    write_rows(store, {(16, "layer4"): maps})
    return path


def run_dir_of(proc: subprocess.CompletedProcess):
    from pathlib import Path

    return Path(proc.stdout.strip().splitlines()[-1].removeprefix("wrote "))


def curves_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_lines_mode_writes_plain_lines_with_rate_and_eta(tmp_path):
    proc = run_cli("--progress", "lines", "--progress-every", "0", "demo-data", str(tmp_path / "data"), *DEMO)
    assert "\r" not in proc.stderr and "wrote 4 videos" in proc.stdout and "demo videos" not in proc.stdout
    lines = proc.stderr.splitlines()
    # a line after every video but the last, whose count the final line gives with the time taken
    assert [re.fullmatch(STAMP + r"demo videos: (\d)/4 videos \(\d+%\), [\d.]+ (videos/s|s/video), ETA \d+s", line)[1]
            for line in lines[:-1]] == ["1", "2", "3"], lines
    assert re.fullmatch(STAMP + r"demo videos: 4/4 videos \(100%\) in \d+s, [\d.]+ (videos/s|s/video)", lines[-1]), lines
    # auto, off a terminal (as here, and in a SLURM log): lines, the next one only after 30 s: the final one alone
    auto = run_cli("index", str(tmp_path / "data"), "--out", str(tmp_path / "samples.parquet"))
    (line,) = auto.stderr.splitlines()
    assert re.fullmatch(STAMP + r"probe: 4/4 videos \(100%\) in \d+s, [\d.]+ (videos/s|s/video)", line) and "wrote" in auto.stdout


def test_off_shows_no_progress_and_quiet_implies_it(tmp_path):
    for options in (["--progress", "off"], ["-q"]):
        proc = run_cli(*options, "demo-data", str(tmp_path / "data"), *DEMO)
        assert proc.stderr == "" and "wrote 4 videos" in proc.stdout


def test_verbose_and_quiet_exclude_each_other():
    proc = run_cli("-v", "-q", "config", "show", check=False)
    assert proc.returncode == 2 and "-v and -q exclude each other" in proc.stderr


def test_each_epoch_logs_the_run_s_curves_and_tensorboard_holds_them(tiny_store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    proc = run_cli("-v", "train", "inception", "--store", str(tiny_store), "--out", str(tmp_path), *TRAIN, "--set", "train.tensorboard=true")
    run_dir = run_dir_of(proc)
    curves = curves_of(run_dir)
    logged = [m.groups() for m in map(EPOCH.fullmatch, proc.stderr.splitlines()) if m]
    assert len(logged) == len(curves) and {c["fold"] for c in curves} == {0, 1, 2}
    for (fold, stage, epoch, loss, watch_loss, auc, lr), c in zip(logged, curves):
        assert (int(fold), stage, int(epoch)) == (c["fold"], c["stage"], c["epoch"])
        assert (loss, watch_loss, auc, lr) == (f"{c['train_loss']:.4f}", f"{c['watch_loss']:.4f}", f"{c['watch_auc']:.3f}", f"{c['lr']:.2e}")
    assert "roc_auc" in proc.stdout and "fold 0 done (1/3): ROC-AUC" in proc.stderr

    # a TensorBoard run per fit, holding the curves' numbers (as float32), and the pooled metrics
    for fold in (0, 1, 2):
        events = EventAccumulator(str(run_dir / "tensorboard" / f"fold{fold}-fit"))
        events.Reload()
        mine = [c for c in curves if c["fold"] == fold]
        for key in ("train_loss", "watch_loss", "watch_auc", "lr"):
            assert [(e.step, e.value) for e in events.Scalars(key)] == [(c["epoch"], float(np.float32(c[key]))) for c in mine]
    summary = json.loads((run_dir / "summary.json").read_text())
    events = EventAccumulator(str(run_dir / "tensorboard" / "summary"))
    events.Reload()
    assert events.Scalars("pooled/roc_auc")[0].value == float(np.float32(summary["pooled"]["roc_auc"]))
    assert [e.value for e in events.Scalars("fold/log_loss")] == [float(np.float32(v)) for v in summary["metrics"]["log_loss"]["per_fold"]]


def test_the_default_level_shows_folds_not_epochs_and_quiet_only_results(tiny_store, tmp_path):
    default = run_cli("train", "inception", "--store", str(tiny_store), "--out", str(tmp_path), *TRAIN)
    assert "fold 2 done (3/3): ROC-AUC" in default.stderr and "debug:" not in default.stderr
    # the progress line of each fit ends with its last epoch's numbers: the curves' last record
    last = [c for c in curves_of(run_dir_of(default)) if c["fold"] == 1][-1]
    assert "fold 1 fit: 3/3 epochs (100%) in" in default.stderr and f"loss {last['train_loss']:.4f}, hold-out loss" in default.stderr
    quiet = run_cli("-q", "train", "inception", "--store", str(tiny_store), "--out", str(tmp_path), *TRAIN)
    assert "fold" not in quiet.stderr and "train inception" not in quiet.stderr, quiet.stderr
    assert all(line.startswith("warning:") for line in quiet.stderr.splitlines()), quiet.stderr
    assert "roc_auc" in quiet.stdout and quiet.stdout.strip().splitlines()[-1].startswith("wrote ")


def test_tensorboard_asked_for_but_missing_is_one_line_before_training(tiny_store, tmp_path, monkeypatch):
    from vidstore.configs import ConfigError, load_config
    from vidstore.heads.finetune import Trainer

    blocked = "import sys, runpy; sys.modules['tensorboard'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    args = ["train", "inception", "--store", str(tiny_store), "--out", str(tmp_path / "runs"), "--set", "train.tensorboard=true"]
    proc = subprocess.run([sys.executable, "-c", blocked, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: train.tensorboard=true needs TensorBoard: pip install 'vidstore[tensorboard]' (or tensorboard), or leave train.tensorboard false"]
    assert not (tmp_path / "runs").exists()
    # fine-tuning checks first, before it reads its samples or init (which do not exist here)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match=r"^finetune.tensorboard=true needs TensorBoard"):
        Trainer(tmp_path / "s.parquet", tmp_path / "run", tmp_path / "m", load_config(None, ["finetune.tensorboard=true"]))


def test_progress_lines_say_count_rate_and_eta_exactly():
    from vidstore.extract.progress import Progress, format_duration

    assert [format_duration(s) for s in (0.4, 42, 185, 8040)] == ["0s", "42s", "3m05s", "2h14m"]
    shown = Progress("extract", 10, "clip", show=False)
    shown.started, shown.done = 0.0, 4
    assert shown.line(now=2.0) == "extract: 4/10 clips (40%), 2.0 clips/s, ETA 3s"
    assert shown.line(now=2.0, final=True) == "extract: 4/10 clips (40%) in 2s, 2.0 clips/s"
    shown.done = 1
    shown.set_note("loss 0.5000")
    assert shown.line(now=4.0) == "extract: 1/10 clips (10%), 4.0 s/clip, ETA 36s; loss 0.5000"


def test_a_loop_that_fails_writes_no_final_line(caplog):
    from vidstore.extract.progress import DEFAULT_EVERY, configure_progress, progress

    configure_progress("lines", DEFAULT_EVERY)
    try:
        with caplog.at_level(logging.INFO, logger="vidstore"):
            assert list(progress([1, 2, 3], "probe", "video")) == [1, 2, 3]
            with pytest.raises(ZeroDivisionError):
                for item in progress([1, 0, 2], "probe", "video"):
                    1 / item
    finally:
        configure_progress()
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["probe: 3/3 videos (100%)"]
