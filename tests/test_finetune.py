"""Fine-tuning end to end (backbone + Inception3D head), its artifact and exports, and
predict with a fine-tuned model and with head runs."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from conftest import ROOT, SHARED_VIDEOS, TINY, indexed_demo, run_cli
from vidstore.configs import load_config
from vidstore.extract.job import run_extract
from vidstore.heads.export import FILES as EXPORT_FILES
from vidstore.heads.export import TOLERANCE, ExportError, export_model, file_sha256
from vidstore.heads.finetune import Clips, Trainer, finetune, load_init
from vidstore.heads.model import ModelSpec
from vidstore.heads.zoo.inception import InceptionHead
from vidstore.heads.predict import PredictError, load_predictor, predict, predict_videos
from vidstore.heads.train import train_head
from vidstore.store import FeatureStore

# small and quick: 2 epochs, batches of 4, layer4 and the head train
FT = ["finetune.epochs=2", "finetune.batch_size=4", "finetune.micro_batch=4", "finetune.num_workers=0",
      "finetune.holdout=0.3", "finetune.trainable=[layer4]", "finetune.lr_backbone=1e-4", "finetune.lr_head=1e-3"]
FT_SETS = [arg for item in TINY + FT for arg in ("--set", item)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    samples, _ = indexed_demo(root, 16, seed=4)
    cfg = load_config(ROOT / "configs/demo.yaml", TINY + [f"train.out={root / 'runs'}", "train.folds=2", "train.bootstrap=0",
                                                          "train.inception.epochs=3", "train.inception.batch_size=8"] + FT)
    run_extract(samples, root / "store.zarr", cfg, progress=False)
    inception_run, _ = train_head("inception", root / "store.zarr", cfg)
    gbm_run, _ = train_head("gbm", root / "store.zarr", cfg)
    return {"root": root, "samples": samples, "store": root / "store.zarr", "cfg": cfg, "inception": inception_run, "gbm": gbm_run}


def test_the_warm_started_head_is_the_head_trained_on_the_store(world):
    init = load_init(world["inception"])
    trainer = Trainer(world["samples"], world["inception"], world["root"] / "unused", world["cfg"])
    stored_head = InceptionHead(**init.head_args)
    stored_head.load_state_dict(torch.load(world["inception"] / "checkpoints" / f"fold{init.source['fold']}" / "weights.pt", weights_only=True))
    stored_head.eval()
    model = trainer.model.eval()
    store = FeatureStore.open(str(world["store"]))
    rows = store.rows().filter((pl.col("variant") == 0) & (pl.col("status") == "done")).head(3)
    maps = torch.from_numpy(store.read(init.scale, init.tap, rows["row"].to_numpy()).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(model.head(maps), stored_head(maps))  # the same head, the same logits
        # and the backbone makes the stored maps from the same clips (stored as float16)
        dataset = Clips(trainer.table, init, augment=False, seed=0)
        position = {v: i for i, v in enumerate(trainer.table["video_id"].to_list())}
        clips = torch.stack([dataset[position[v]][0] for v in rows["video_id"].to_list()])
        fresh = model.taps(clips)[init.tap]
    assert torch.allclose(fresh, maps, rtol=1e-2, atol=1e-2)


def test_loss_decreases_on_a_fixed_batch(world):
    trainer = Trainer(world["samples"], world["inception"], world["root"] / "fixed", world["cfg"])
    dataset = Clips(trainer.table, trainer.init, augment=False, seed=0)
    items = [dataset[i] for i in range(6)]
    clips = torch.stack([it[0] for it in items])
    targets = torch.tensor([it[1] for it in items])
    trainer.model.train()
    losses = [trainer.train_step(clips, targets) for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_training_clips_draw_reproducible_augmentations_per_epoch(world):
    init = load_init(world["inception"])
    table = Trainer(world["samples"], world["inception"], world["root"] / "augment", world["cfg"]).table
    plain = Clips(table, init, augment=False, seed=0)
    a, b = Clips(table, init, augment=True, seed=0), Clips(table, init, augment=True, seed=0)
    # the demo store's explicit policy [[hflip, reverse]] is honoured: the clip mirrored and backwards
    assert torch.equal(a[0][0], plain[0][0].flip(1).flip(-1))
    # a drawn policy: the same (seed, video, epoch) gives the same bytes, a new epoch a fresh draw
    for d in (a, b):
        d.policy = d.policy.model_copy(update={"explicit": [], "spatial": (1, 2), "temporal": (0, 1)})
    assert torch.equal(a[0][0], b[0][0])
    b.epoch = 1
    assert not torch.equal(a[0][0], b[0][0])


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    """A fine-tuned model folder with every export (each checked when written)."""
    if importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo ONNX exporter needs onnxscript (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("exported") / "model"
    cfg = load_config(ROOT / "configs/demo.yaml", TINY + FT + ["finetune.export=[pt2,onnx,torchscript]"])
    result = finetune(world["samples"], world["inception"], out, cfg, inject_oom_steps=[1])
    return {"folder": out, "result": result}


def eager_logits(folder: Path, cfg, clips: torch.Tensor) -> torch.Tensor:
    """The logits of the model rebuilt from its eager weights (weights.pt)."""
    predictor = load_predictor(folder, cfg, device="cpu")
    assert predictor.export is None
    with torch.no_grad():
        return predictor.model(clips)


def test_finetune_writes_the_artifact_and_checked_exports(world, exported):
    folder = exported["folder"]
    assert exported["result"]["status"] == "done"
    spec = yaml.safe_load((folder / "model.yaml").read_text())
    assert spec["version"] == 2 and spec["tap"] == "layer4" and spec["head"] == "inception"
    assert ModelSpec.read(folder).head_args == load_init(world["inception"]).head_args
    assert spec["clip"]["frames"] == 4 and spec["clip"]["scale"] == 32 and 0 < spec["threshold"] < 1
    assert spec["training"]["init"]["run"] == str(world["inception"]) and spec["metrics"]["holdout"]["roc_auc"] is not None
    # the simulated out-of-memory at step 1 halved the micro-batch and training went on
    assert spec["training"]["oom_events"] == [{"step": 1, "micro_batch": 2, "error": "SimulatedOOM"}]
    assert spec["training"]["epochs_run"] == 2
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert "head.linear.weight" in state and "taps.backbone.layer4.0.conv1.0.weight" in state
    assert list(spec["exports"]) == ["pt2", "onnx", "torchscript"]
    for kind, entry in spec["exports"].items():
        assert entry["file"] == EXPORT_FILES[kind] and entry["sha256"] == file_sha256(folder / entry["file"])
        assert entry["fresh_batches"] == [1, 3] and entry["tolerance"] == TOLERANCE
        assert entry["max_abs_diff"] is not None and entry["max_abs_diff"] <= TOLERANCE, entry
    assert spec["exports"]["onnx"]["checked_with"].startswith("onnxruntime ")
    assert spec["exports"]["pt2"]["checked_with"] == f"torch {torch.__version__}"


# Loads every export as someone without vidstore would (importing it fails) and writes the
# logits of the batch it is given.
LOAD_WITHOUT_VIDSTORE = """
import sys
sys.modules["vidstore"] = None  # any import of this project fails
import numpy as np, onnxruntime, torch
folder, batch, out = sys.argv[1:]
clips = torch.from_numpy(np.load(batch))
with torch.no_grad():
    logits = {
        "pt2": torch.export.load(f"{folder}/model.pt2").module()(clips).numpy(),
        "onnx": onnxruntime.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"]).run(None, {"clips": clips.numpy()})[0],
        "torchscript": torch.jit.load(f"{folder}/model.ts")(clips).numpy(),
    }
np.savez(out, **logits)
"""


def test_each_export_loads_without_vidstore_and_gives_the_eager_logits_on_a_fresh_batch(world, exported, tmp_path):
    folder = exported["folder"]
    fresh = torch.randn(5, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1234)) * 1.5 + 0.2  # not the check's batches
    np.save(tmp_path / "batch.npy", fresh.numpy())
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_VIDSTORE, str(folder), str(tmp_path / "batch.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = eager_logits(folder, world["cfg"], fresh).numpy()
    assert expected.shape == (5,) and expected.std() > 1e-3  # the clips get different logits: the comparison means something
    got = np.load(tmp_path / "out.npz")
    for kind in ("pt2", "onnx", "torchscript"):
        assert got[kind].shape == (5,)
        assert np.abs(got[kind] - expected).max() <= TOLERANCE, (kind, np.abs(got[kind] - expected).max())


def test_pt2_and_onnx_exports_warn_nothing(world, model_dir, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    model = load_predictor(model_dir, world["cfg"], device="cpu").model
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning, DeprecationWarning or any other fails the test
        done = export_model(model, 4, 32, tmp_path, ["pt2", "onnx"])
    assert sorted(done) == ["onnx", "pt2"] and all(e["max_abs_diff"] <= TOLERANCE for e in done.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model, 4, 32, tmp_path, ["torchscript"])
    # TorchScript, on request only, still warns that torch deprecates it, and only that
    assert caught and all(issubclass(w.category, (FutureWarning, DeprecationWarning)) and "torch.jit" in str(w.message) for w in caught)


class CallCounting(torch.nn.Module):
    """Its output depends on how often it was called: torch.export records the count of the
    moment it traced, the eager model goes on counting."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return clips.mean(dim=(1, 2, 3, 4)) + self.calls


def test_an_export_that_differs_from_the_eager_model_fails_in_one_line(tmp_path):
    from cli import is_user_error

    with pytest.raises(ExportError) as err:
        export_model(CallCounting(), 2, 8, tmp_path, ["pt2"])
    message = str(err.value)
    assert "pt2 export" in message and f"tolerance {TOLERANCE:g}" in message and "\n" not in message
    assert is_user_error(err.value)  # the CLI prints it as one line


def test_each_epoch_is_a_log_line_and_a_tensorboard_point(world, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(ROOT / "configs/demo.yaml", TINY + FT + ["finetune.tensorboard=true"])
    with caplog.at_level(logging.INFO, logger="vidstore"):
        finetune(world["samples"], world["inception"], tmp_path / "model", cfg)
    history = [json.loads(line) for line in (tmp_path / "model" / "history.jsonl").read_text().splitlines()]
    lines = [r.getMessage() for r in caplog.records if r.name == "vidstore.heads.finetune"]
    assert len(lines) == len(history) == 2
    for line, h in zip(lines, history):
        assert line.startswith(f"finetune epoch {h['epoch']}/2: loss {h['train_loss']:.4f}, hold-out loss {h['holdout_loss']:.4f}, AUC "), line
        assert f", lr {h['lr_head']:.2e}, " in line
    events = EventAccumulator(str(tmp_path / "model" / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "holdout_loss", "lr_head"):
        assert [(e.step, e.value) for e in events.Scalars(key)] == [(h["epoch"], float(np.float32(h[key]))) for h in history]
    holdout = ModelSpec.read(tmp_path / "model").metrics["holdout"]
    assert [(e.step, e.value) for e in events.Scalars("holdout/log_loss")] == [(2, float(np.float32(holdout["log_loss"])))]


def finetune_cmd(world, out, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "finetune", "--samples", str(world["samples"]), "--init", str(world["inception"]),
            "--out", str(out), "-c", str(ROOT / "configs/demo.yaml"), *FT_SETS, "--set", "finetune.epochs=3", *extra]


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_kill_and_resume_gives_the_same_weights(world, tmp_path, kill):
    whole = subprocess.run(finetune_cmd(world, tmp_path / "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = subprocess.Popen(finetune_cmd(world, tmp_path / "killed"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, kill)
    out, _ = proc.communicate()
    if kill == signal.SIGTERM:
        assert proc.returncode == 0 and "continue with --resume" in out
    assert not (tmp_path / "killed" / "weights.pt").exists()
    again = subprocess.run(finetune_cmd(world, tmp_path / "killed", "--resume"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(tmp_path / "whole" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_torchrun_two_processes_train(world, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", *finetune_cmd(world, tmp_path / "ddp")[1:]],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spec = yaml.safe_load((tmp_path / "ddp" / "model.yaml").read_text())
    assert spec["training"]["world_size"] == 2 and (tmp_path / "ddp" / "weights.pt").is_file()


@pytest.fixture(scope="module")
def model_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    finetune(world["samples"], world["inception"], out, load_config(ROOT / "configs/demo.yaml", TINY + FT))
    return out


@pytest.mark.parametrize("which", ["model", "inception", "gbm"])
def test_predict_writes_a_row_for_every_file(world, model_dir, corrupt_files, tmp_path, which):
    folder = tmp_path / "new"
    folder.mkdir()
    for path in sorted((world["root"] / "data" / "videos").glob("*.mp4"))[:3]:
        shutil.copy(path, folder / path.name)
    shutil.copy(corrupt_files["truncated"], folder / "broken.mp4")
    target = {"model": model_dir, "inception": world["inception"], "gbm": world["gbm"]}[which]
    table = predict(target, folder, world["cfg"], workers=0, progress=False)
    # the predicted class is pred_label: "label" is the truth everywhere else
    assert table.columns == ["path", "video_id", "prob_fake", "pred_label", "n_clips", "status", "reason"]
    assert table.height == 4
    broken = table.filter(pl.col("video_id") == "broken.mp4").row(0, named=True)
    assert broken["status"] == "failed" and broken["prob_fake"] is None and broken["reason"]
    ok = table.filter(pl.col("status") == "ok")
    assert ok.height == 3 and ok["prob_fake"].is_between(0, 1).all() and set(ok["pred_label"]) <= {"fake", "real"}
    assert (ok["n_clips"] == 1).all()
    tta = predict(target, folder, world["cfg"], tta=True, workers=0, progress=False).filter(pl.col("status") == "ok")
    assert (tta["n_clips"] == 2).all()  # the original and the store's one augmented variant


@pytest.mark.parametrize("which", ["model", "gbm"])
def test_predict_batches_clips_across_videos_with_the_same_results(world, model_dir, corrupt_files, tmp_path, which):
    paths = sorted((world["root"] / "data" / "videos").glob("*.mp4"))[:5]
    shutil.copy(corrupt_files["truncated"], tmp_path / "broken.mp4")
    paths.insert(2, tmp_path / "broken.mp4")
    target = {"model": model_dir, "gbm": world["gbm"]}[which]
    one = load_predictor(target, world["cfg"], tta=True)
    by_video = predict_videos(one, paths, workers=0, batch_size=1, progress=False)
    many = load_predictor(target, world["cfg"], tta=True)
    batched = predict_videos(many, paths, workers=0, batch_size=64, progress=False)
    assert (one.forward_passes, many.forward_passes) == (5, 1)  # 5 readable videos, 2 clips each
    assert by_video["path"].to_list() == [str(p) for p in paths]  # rows keep the input order
    assert batched.drop("prob_fake").equals(by_video.drop("prob_fake"))
    ok = by_video["status"] == "ok"
    assert np.allclose(batched["prob_fake"].filter(ok).to_numpy(), by_video["prob_fake"].filter(ok).to_numpy(), atol=1e-5)


def test_predict_with_an_export_gives_the_eager_model_s_probabilities(world, exported, tmp_path):
    folder = exported["folder"]
    paths = sorted((world["root"] / "data" / "videos").glob("*.mp4"))[:4]
    # two clips a video (tta), three clips a pass: passes of 4 and 4 clips, batch sizes the export never saw
    eager = predict_videos(load_predictor(folder, world["cfg"], tta=True), paths, workers=0, batch_size=3, progress=False)
    assert (eager["status"] == "ok").all() and eager["prob_fake"].n_unique() == 4
    for kind in ("pt2", "onnx"):
        predictor = load_predictor(folder, world["cfg"], tta=True, use_export=kind)
        assert predictor.export == kind
        table = predict_videos(predictor, paths, workers=0, batch_size=3, progress=False)
        assert table.drop("prob_fake").equals(eager.drop("prob_fake"))
        # a probability moves by at most a quarter of the logit's difference
        assert np.abs(table["prob_fake"].to_numpy() - eager["prob_fake"].to_numpy()).max() <= TOLERANCE / 4, kind
    # a folder shipped without its eager weights scores with its checked pt2 export
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("model.yaml", "model.pt2"):
        shutil.copy(folder / name, shipped / name)
    predictor = load_predictor(shipped, world["cfg"], tta=True)
    assert predictor.export == "pt2"
    table = predict_videos(predictor, paths, workers=0, batch_size=3, progress=False)
    assert np.abs(table["prob_fake"].to_numpy() - eager["prob_fake"].to_numpy()).max() <= TOLERANCE / 4
    # ... or with its ONNX one when that is the export it ships
    (shipped / "model.pt2").unlink()
    shutil.copy(folder / "model.onnx", shipped / "model.onnx")
    predictor = load_predictor(shipped, world["cfg"], tta=True)
    assert predictor.export == "onnx"
    table = predict_videos(predictor, paths, workers=0, batch_size=3, progress=False)
    assert np.abs(table["prob_fake"].to_numpy() - eager["prob_fake"].to_numpy()).max() <= TOLERANCE / 4


def test_predict_use_export_from_the_command_line(world, model_dir, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    for path in sorted((world["root"] / "data" / "videos").glob("*.mp4"))[4:7]:
        shutil.copy(path, folder / path.name)
    run_cli("predict", str(model_dir), str(folder), "--use-export", "pt2", "--workers", "0", "--out", str(tmp_path / "pt2.csv"))
    exported = pl.read_csv(tmp_path / "pt2.csv")
    eager = predict(model_dir, folder, world["cfg"], workers=0, progress=False)
    assert exported["video_id"].to_list() == eager["video_id"].to_list() and (exported["status"] == "ok").all()
    assert np.abs(exported["prob_fake"].to_numpy() - eager["prob_fake"].to_numpy()).max() <= TOLERANCE / 4
    # model_dir has the default export only (pt2): asking for onnx is a one-line error
    bad = run_cli("predict", str(model_dir), str(folder), "--use-export", "onnx", "--workers", "0", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "has no onnx export" in bad.stderr
    # an export file that is not the one checked is refused
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copy(model_dir / "model.yaml", tampered / "model.yaml")
    (tampered / "model.pt2").write_bytes(b"not the checked export")
    with pytest.raises(PredictError, match="sha256 differs"):
        load_predictor(tampered, world["cfg"], use_export="pt2")


def test_predict_from_the_command_line_on_the_real_videos(model_dir, tmp_path):
    if not SHARED_VIDEOS.is_dir():
        pytest.skip("../shared/data/videos is not present")
    proc = run_cli("predict", str(model_dir), str(SHARED_VIDEOS), "--out", str(tmp_path / "preds.csv"), "--workers", "0")
    table = pl.read_csv(tmp_path / "preds.csv")
    assert table.height == 3 and (table["status"] == "ok").all() and "video" in proc.stdout
    bad = run_cli("predict", str(tmp_path), str(SHARED_VIDEOS), check=False)
    assert bad.returncode == 2 and "neither a model folder" in bad.stderr


def test_decode_workers_give_the_same_fine_tuned_weights(world, model_dir, tmp_path):
    """Clips made in two worker processes (the decode pool, with its time limit) train the
    same model, bit for bit, as clips made in the training process."""
    cfg = load_config(ROOT / "configs/demo.yaml", TINY + FT + ["finetune.num_workers=2"])
    finetune(world["samples"], world["inception"], tmp_path / "workers", cfg)
    ours = torch.load(tmp_path / "workers" / "weights.pt", weights_only=True)
    theirs = torch.load(model_dir / "weights.pt", weights_only=True)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_final_model_trains_on_every_video_for_the_holdout_epochs(world, model_dir, tmp_path):
    result = finetune(world["samples"], world["inception"], tmp_path / "final", load_config(ROOT / "configs/demo.yaml", TINY + FT),
                      final_from=model_dir)
    first = yaml.safe_load((model_dir / "model.yaml").read_text())
    spec = yaml.safe_load((tmp_path / "final" / "model.yaml").read_text())
    assert result["status"] == "done"
    assert spec["training"]["holdout_videos"] == 0 and spec["training"]["train_videos"] == 16
    assert spec["training"]["epochs_run"] == (first["training"]["best_epoch"] or first["training"]["epochs_run"])
    assert spec["threshold"] == first["threshold"]


@pytest.mark.parametrize("which", ["model", "gbm"])
def test_evaluate_from_the_videos_gives_predict_s_probabilities_and_leaves_out_training_videos(world, model_dir, tmp_path, which):
    from sklearn.metrics import roc_auc_score

    from vidstore.heads.evaluate import evaluate

    _, other = indexed_demo(tmp_path / "other", 6, seed=5)
    seen = pl.read_parquet(world["samples"]).head(1)  # a video the run and the model trained on
    samples = tmp_path / "other_and_seen.parquet"
    pl.concat([other, seen.select(other.columns)]).write_parquet(samples)
    target = {"model": model_dir, "gbm": world["gbm"]}[which]
    out, summary = evaluate(target, samples, tmp_path / "external", world["cfg"], workers=0, bootstrap=50)
    assert summary.split == "external" and summary.evaluated["n_overlap"] == 1 and summary.evaluated["overlap_same_video_id"] == 1
    oof = pl.read_parquet(out / "oof.parquet").sort("video_id")
    assert oof["video_id"].to_list() == sorted(other["video_id"].to_list())
    expected = predict_videos(load_predictor(target, world["cfg"], samples=samples), [Path(p) for p in oof["path"].to_list()],
                              workers=0, progress=False)
    np.testing.assert_allclose(oof["prob"].to_numpy(), expected["prob_fake"].to_numpy(), rtol=1e-6)
    assert summary.pooled["roc_auc"] == pytest.approx(roc_auc_score(oof["label"].to_numpy(), oof["prob"].to_numpy()))
    assert summary.n_videos == 6 and (out / "report.html").is_file()
