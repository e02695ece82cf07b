"""Heads: gbm, logreg and inception learn separable data and sit at chance on shuffled
labels; thresholds never see the validation fold; reports, comparisons and sweeps."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from sklearn import metrics as skm

from conftest import ROOT, run_cli, write_rows
from vidstore.configs import load_config
from vidstore.heads.base import Fitted
from vidstore.heads.crossval import cross_validate
from vidstore.heads.metrics import binary_metrics, choose_threshold, expected_calibration_error
from vidstore.heads.report import PLOTS
from vidstore.heads.train import train_head
from vidstore.store import ArraySpec, FeatureStore

N_VIDEOS, RPV = 80, 2


@pytest.fixture(scope="module")
def separable_store(tmp_path_factory):
    """80 videos in 40 groups, 2 variants each; the label shifts a few feature dims and
    lights up a corner of a few map channels, under noise."""
    path = tmp_path_factory.mktemp("heads") / "sep.zarr"
    rng = np.random.default_rng(0)
    group_label = np.arange(40) % 2
    video_group = np.repeat(np.arange(40), 2)
    labels = group_label[video_group]
    rows = pl.DataFrame({
        "video_id": np.repeat([f"v{i}" for i in range(N_VIDEOS)], RPV),
        "group": np.repeat([f"g{g}" for g in video_group], RPV),
        "label": np.repeat(labels, RPV),
        "variant": np.tile(np.arange(RPV), N_VIDEOS),
        "platform": np.repeat(np.where(np.arange(N_VIDEOS) % 3 == 0, "youtube", "facebook"), RPV),
        "width": np.repeat(np.where(np.arange(N_VIDEOS) % 2 == 0, 640.0, 1280.0), RPV),
        "height": np.repeat(np.where(np.arange(N_VIDEOS) % 2 == 0, 360.0, 720.0), RPV),
        "duration": np.repeat(rng.uniform(3, 90, N_VIDEOS), RPV),
    })
    specs = {16: [ArraySpec("embedding", (32,)), ArraySpec("layer4", (32, 1, 3, 3)), ArraySpec("handcrafted", (6,), "float32", {"feature_names": list("abcdef")}, allow_nan=True)]}
    store = FeatureStore.create(str(path), rows, specs, rows_per_video=RPV, shard_videos=16)
    y = np.repeat(labels, RPV).astype(np.float32)
    embedding = rng.standard_normal((N_VIDEOS * RPV, 32)).astype(np.float32)
    embedding[:, :4] += 1.2 * y[:, None]
    maps = rng.standard_normal((N_VIDEOS * RPV, 32, 1, 3, 3)).astype(np.float32)
    maps[:, :6, :, :2, :2] += 1.5 * y[:, None, None, None, None]
    hand = rng.standard_normal((N_VIDEOS * RPV, 6)).astype(np.float32)
    hand[:, 0] += 1.5 * y
    hand[::7, 5] = np.nan  # a statistic that was not measurable
    values = {(16, "embedding"): embedding, (16, "layer4"): maps, (16, "handcrafted"): hand}
    write_rows(store, values)
    return path


def config(tmp_path, *extra):
    return load_config(ROOT / "configs/demo.yaml", [f"train.out={tmp_path}", "train.bootstrap=200",
                                                    "train.inception.epochs=15", "train.inception.batch_size=16", *extra])


@pytest.mark.parametrize("head,features", [("gbm", "[embedding,handcrafted]"), ("logreg", "[embedding,handcrafted]"), ("inception", None)])
def test_each_head_learns_and_sits_at_chance_on_shuffled_labels(separable_store, tmp_path, head, features):
    extra = [f"train.features={features}"] if features else []
    run_dir, real = train_head(head, separable_store, config(tmp_path / "real", *extra))
    assert real.pooled["roc_auc"] > 0.85, real.pooled["roc_auc"]
    null = []
    for seed in range(3):
        _, shuffled = train_head(head, separable_store, config(tmp_path / f"null{seed}", *extra, "train.shuffle_labels=true", f"train.seed={seed}"))
        null.append(shuffled.pooled["roc_auc"])
    assert 0.3 < float(np.mean(null)) < 0.7, null
    assert real.split_audit["leaking_groups"] == 0
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "summary.json", "oof.parquet", "metrics.jsonl", "report.html", "roc.png", "pr.png", "reliability.png", "confusion.png"} <= files
    page = (run_dir / "report.html").read_text()
    for plot in [p for p in PLOTS if p in files]:
        assert f'src="{plot}"' in page
    if head == "gbm":
        assert "importance.png" in files and real.top_features[0][0].startswith(("embedding_", "handcrafted_a"))
    if head == "inception":
        assert "curves.png" in files and len(list((run_dir / "checkpoints").glob("fold*/weights.pt"))) == 5
        state = torch.load(run_dir / "checkpoints" / "fold0" / "weights.pt", weights_only=True)
        assert "linear.weight" in state
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert {"fold", "epoch", "train_loss", "watch_loss", "watch_auc"} <= set(lines[0])
    assert set(real.slices) == {"platform", "resolution", "duration_band"}


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0.001, 0.999)
    m = binary_metrics(y, p, threshold=0.55)
    predicted = (p >= 0.55).astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert m["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert m["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.05, 0.95, 0.95, 0.95])) == pytest.approx(0.05)


class SplitProbe:
    """A head that ranks perfectly everywhere but scores the training side in 0.6-0.8 and
    anything else in 0.1-0.3: a threshold chosen on the validation fold would be about
    0.2 (F1 = 1 there); one chosen on the training side is about 0.7 (F1 = 0 there)."""

    name, refit = "probe", True

    def __init__(self, labels):
        self.labels = labels

    def fit(self, train, watch, labels, seed, epochs=None):
        return Fitted(model=set(train.tolist()) | set(np.asarray(watch if watch is not None else [], dtype=int).tolist()))

    def predict(self, fitted, rows):
        seen = np.array([r in fitted.model for r in rows.tolist()])
        return np.where(seen, 0.6, 0.1) + 0.2 * self.labels[rows]

    def describe(self):
        return {}


def test_the_threshold_never_sees_the_validation_fold(separable_store):
    rows = FeatureStore.open(str(separable_store)).rows()
    labels = rows["label"].to_numpy().astype(int)
    result = cross_validate(SplitProbe(labels), rows, labels, n_folds=4, bootstrap=0)
    assert all(t == pytest.approx(0.7, abs=0.11) for t in result.thresholds), result.thresholds
    assert result.pooled["roc_auc"] == 1.0 and result.metrics["recall"]["mean"] == 0.0
    assert choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(0.25)


def test_calibration_is_fitted_on_the_training_side(separable_store, tmp_path):
    _, raw = train_head("gbm", separable_store, config(tmp_path, "train.features=[embedding]"))
    _, platt = train_head("gbm", separable_store, config(tmp_path, "train.features=[embedding]", "train.calibration=platt"))
    assert platt.calibration == "platt"
    assert platt.pooled["log_loss"] < raw.pooled["log_loss"]  # gbm's raw probabilities are overconfident


def test_runs_compare_and_sweep_from_the_command_line(separable_store, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("train.gbm.num_leaves: [3, 7]\ntrain.gbm.n_estimators: [50]\n")
    sweep = run_cli("sweep", "gbm", "--store", str(separable_store), "--grid", str(grid), "-c", str(ROOT / "configs/demo.yaml"),
                    "--set", f"train.out={tmp_path / 'runs'}", "--set", "train.bootstrap=0", "--set", "train.features=[embedding]", "--nested")
    runs = sorted(p for p in (tmp_path / "runs").glob("*-gbm-*") if p.is_dir())
    assert len(runs) == 2 and "nested estimate of the sweep's choice" in sweep.stdout
    assert len(list((tmp_path / "runs" / "sweeps").glob("*.csv"))) == 1  # the sweep's table, in no run's place
    table = run_cli("runs", "compare", *map(str, runs), "--sort", "pr_auc", "--out", str(tmp_path / "cmp"))
    assert all(r.name in table.stdout for r in runs)
    csv_rows = (tmp_path / "cmp.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].startswith("head,features,split,roc_auc")
    assert (tmp_path / "cmp.md").read_text().count("| gbm |") == 2
    # the README's recipe, twice in a row: its own outputs and the sweep's folder are skipped
    everything = sorted(str(p) for p in (tmp_path / "runs").iterdir())
    for attempt in range(2):
        again = run_cli("runs", "compare", *everything, "--out", str(tmp_path / "runs" / "compare"))
        assert sorted((tmp_path / "runs" / "compare.csv").read_text().splitlines()[1:]) == sorted(csv_rows[1:])  # the same two runs
        everything = sorted(str(p) for p in (tmp_path / "runs").iterdir())  # now with compare.csv and compare.md
    assert "skipped 3 path(s) that are not runs" in again.stderr and "compare.csv" in again.stderr
    folder = run_cli("runs", "compare", str(tmp_path / "runs"))  # a folder of runs
    assert all(r.name in folder.stdout for r in runs)
    bad = run_cli("runs", "compare", str(tmp_path), check=False)  # runs two levels down are not looked for
    assert bad.returncode == 2 and "no run folder" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_artifacts_are_typed_and_a_newer_version_is_refused_in_one_line(separable_store, tmp_path):
    from vidstore.heads.model import ModelSpec
    from vidstore.heads.runs import RunSummary
    from vidstore.store import SCHEMA_VERSION, ArtifactVersionError, StoreProvenance

    run_dir, summary = train_head("logreg", separable_store, config(tmp_path, "train.features=[embedding]", "train.inner_folds=0"))
    read = RunSummary.read(run_dir)
    assert read.to_dict() == summary.to_dict() and read.reads == "embedding" and read.inputs == "vectors" and read.tap is None
    saved = json.loads((run_dir / "summary.json").read_text())
    older = {k: v for k, v in saved.items() if k != "intervals"}  # a format-2 summary had no group intervals
    for data, needle in [({**saved, "version": 99}, "format version 99; this vidstore reads up to 3: upgrade vidstore"),
                         ({**saved, "version": None}, "has no format version (written by an older vidstore)"),
                         ({**older, "version": 2}, "has format version 2 and lacks intervals: written by an older vidstore")]:
        (run_dir / "summary.json").write_text(json.dumps(data))
        proc = run_cli("runs", "compare", str(run_dir), check=False)
        assert proc.returncode == 2 and needle in proc.stderr and str(run_dir) in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    for reader, data in [(ModelSpec.from_dict, {"version": 3}), (StoreProvenance.from_dict, {"schema_version": SCHEMA_VERSION + 1})]:
        with pytest.raises(ArtifactVersionError, match="this vidstore reads up to"):
            reader(data)
    # the run's copy of the store's provenance, and a model's spec, through the command line
    (run_dir / "summary.json").write_text(json.dumps(saved))
    assert StoreProvenance.read(run_dir / "provenance.json", "run") == FeatureStore.open(str(separable_store)).provenance
    (run_dir / "provenance.json").write_text(json.dumps({"version": SCHEMA_VERSION + 1}))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.yaml").write_text("version: 3\nhead: inception\n")
    for folder, needle in [(run_dir, f"run {run_dir} (provenance.json) has format version {SCHEMA_VERSION + 1}; this vidstore reads up to {SCHEMA_VERSION}: upgrade vidstore"),
                           (model_dir, f"model {model_dir} (model.yaml) has format version 3; this vidstore reads up to 2: upgrade vidstore")]:
        proc = run_cli("predict", str(folder), str(tmp_path), check=False)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {needle}", proc.stderr
    # the saved heads carry their format version too
    head_file = run_dir / "checkpoints" / "fold0" / "head.yaml"
    head_file.write_text(head_file.read_text().replace("version: 1", "version: 7"))
    with pytest.raises(ArtifactVersionError, match="format version 7"):
        from vidstore.heads.registry import head_class

        head_class("logreg").load(head_file.parent)


PROBE_HEADS = '''
import numpy as np
from vidstore.configs import ConfigSection
from vidstore.heads.base import HeadBase
from vidstore.heads.registry import register_head


class NoParams(ConfigSection):
    pass


@register_head("constant")
class ConstantHead(HeadBase):
    """No signal at all: every video scores 0.5."""
    inputs, Params = "vectors", NoParams

    def fit(self, data):
        return self

    def predict_proba(self, data):
        return np.full(len(data), 0.5)

    def save_weights(self, folder):
        pass


@register_head("inverted")
class InvertedHead(HeadBase):
    """Ranks backwards: the less a video looks fake, the higher its score."""
    inputs, Params = "vectors", NoParams

    def fit(self, data):
        return self

    def predict_proba(self, data):
        return 1 / (1 + np.exp(data.X[:, :4].mean(axis=1)))

    def save_weights(self, folder):
        pass
'''


def test_a_degenerate_threshold_and_a_worse_than_chance_interval_are_flagged(separable_store, tmp_path):
    module = tmp_path / "probes.py"
    module.write_text(PROBE_HEADS)
    common = ["--head-module", str(module), "--store", str(separable_store), "-c", str(ROOT / "configs/demo.yaml"),
              "--set", "train.features=[embedding]", "--set", "train.bootstrap=300"]
    constant = run_cli("train", "constant", *common, "--set", f"train.out={tmp_path / 'constant'}")
    (run,) = (tmp_path / "constant").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    # 0.5 everywhere: the only cut calls every video fake, in every fold
    assert summary["degenerate"]["pooled"] == "100% of 40 real videos called fake"
    assert sorted(summary["degenerate"]["folds"]) == [str(f) for f in range(5)]
    assert "WARNING: degenerate threshold: 100% of 40 real videos called fake" in constant.stdout
    assert "degenerate threshold" in (run / "report.html").read_text()

    inverted = run_cli("train", "inverted", *common, "--set", f"train.out={tmp_path / 'inverted'}", "--set", "train.threshold=youden")
    (run,) = (tmp_path / "inverted").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    lo, hi = summary["intervals"]["by_group"]["roc_auc"]
    assert summary["pooled"]["roc_auc"] < 0.2 and hi < 0.5 and summary["intervals"]["n_groups"] == 40
    assert summary["threshold_rule"] == "youden"
    assert any(w.startswith("worse than chance") and "check labels or leakage" in w for w in summary["warnings"])
    assert "worse than chance" in inverted.stdout and "worse than chance" in (run / "report.html").read_text()
    table = run_cli("runs", "compare", str(run))
    assert "worse-than-chance" in table.stdout
    bad = run_cli("train", "constant", *common, "--set", "train.threshold=fpr:5", check=False)
    assert bad.returncode == 2 and "train.threshold" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_every_run_reports_group_intervals_and_the_field_s_metrics(separable_store, tmp_path):
    run_dir, summary = train_head("gbm", separable_store, config(tmp_path, "train.features=[embedding,handcrafted]", "train.threshold=eer"))
    saved = json.loads((run_dir / "summary.json").read_text())
    for key in ("eer", "tpr_at_fpr_0.01", "tpr_at_fpr_0.05", "roc_auc", "pr_auc", "balanced_accuracy", "log_loss", "brier", "ece"):
        assert saved["pooled"][key] is not None and len(saved["metrics"][key]["per_fold"]) == 5, key
    oof = pl.read_parquet(run_dir / "oof.parquet")
    assert saved["pooled"]["eer"] == pytest.approx(
        __import__("vidstore.heads.metrics", fromlist=["equal_error_rate"]).equal_error_rate(oof["label"].to_numpy(), oof["prob"].to_numpy()))
    iv = saved["intervals"]
    assert iv["n_groups"] == 40 and iv["n_videos"] == 80 and set(iv["by_group"]) == {"roc_auc", "pr_auc", "eer", "balanced_accuracy"}
    for metric, (lo, hi) in iv["by_group"].items():
        assert lo <= saved["pooled"][metric] <= hi, metric
    assert saved["threshold_rule"] == "eer" and saved["degenerate"] == {"pooled": None, "folds": {}}
    # gbm stopped early on each inner fold and refit for their median best round
    curves = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for fold in saved["folds"]:
        assert len(fold["inner_best_rounds"]) == 3 and fold["refit_rounds"] == int(np.median(fold["inner_best_rounds"]))
        # each inner fit's best round is where its inner validation loss was lowest, and it
        # stopped 30 rounds after that (or at the 300 rounds allowed)
        for j, best in enumerate(fold["inner_best_rounds"]):
            losses = [c["watch_loss"] for c in curves if c["fold"] == fold["fold"] and c["stage"] == f"inner{j}"]
            assert best == int(np.argmin(losses)) + 1 and len(losses) == min(best + 30, 300)
        assert fold["train_real"] + fold["train_fake"] == fold["train_videos"] and fold["val_real"] + fold["val_fake"] == fold["val_videos"]
    page = (run_dir / "report.html").read_text()
    assert "Backbone weights" in page and "sizes and class balance" in page and 'src="scores.png"' in page
    assert "n_groups=40" in page and "most confident mistakes" in page
    wrong = oof.filter((oof["prob"] >= oof["threshold"]).cast(pl.Int64) != oof["label"].cast(pl.Int64))
    worst = wrong.with_columns((wrong["prob"] - wrong["label"]).abs().alias("e")).sort("e", descending=True)["video_id"][0]
    assert f"<td>{worst}</td>" in page


def test_the_inception_head_gives_the_same_logits_and_gradients_in_channels_last():
    """The head trains in channels-last layout for speed; the numbers are those of the default layout."""
    from vidstore.heads.zoo.inception import CHANNELS_LAST, InceptionHead

    torch.manual_seed(0)
    plain = InceptionHead(in_channels=64, branch_channels=8, bottleneck=8)
    fast = InceptionHead(in_channels=64, branch_channels=8, bottleneck=8).to(memory_format=CHANNELS_LAST)
    fast.load_state_dict(plain.state_dict())
    maps = torch.relu(torch.randn(6, 64, 2, 7, 7))  # layer4's (t, h, w) at 16x112x112; ReLU maps tie at 0
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    grads = []
    for net, x in ((plain, maps), (fast, maps.contiguous(memory_format=CHANNELS_LAST))):
        net.train()
        torch.manual_seed(1)  # the same dropout mask
        logits = net(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in net.parameters()]))
        net.eval()
        with torch.no_grad():
            grads[-1] += (net(x),)
    (train_a, grad_a, eval_a), (train_b, grad_b, eval_b) = grads
    assert torch.allclose(train_a, train_b, atol=1e-5) and torch.allclose(eval_a, eval_b, atol=1e-5)
    assert eval_a.std() > 1e-3  # the logits differ between maps: the comparison means something
    for a, b in zip(grad_a, grad_b):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("t,h,w", [(2, 7, 7), (1, 3, 3), (4, 2, 9)])
def test_same_conv_leaves_out_only_taps_that_meet_padding(t, h, w):
    from vidstore.heads.zoo.inception import SameConv3d

    torch.manual_seed(0)
    conv = SameConv3d(6, 5, 5, padding=2)
    maps = torch.randn(3, 6, t, h, w, requires_grad=True)
    full = torch.nn.functional.conv3d(maps, conv.weight, conv.bias, padding=2)  # every tap
    out = conv(maps)
    assert out.shape == full.shape and torch.allclose(out, full, atol=1e-5)
    (grad_full,) = torch.autograd.grad(full.square().sum(), conv.weight)
    (grad_same,) = torch.autograd.grad(conv(maps).square().sum(), conv.weight)
    assert torch.allclose(grad_same, grad_full, atol=1e-4)
    left_out = [k for k in range(5) if abs(k - 2) > t - 1]  # temporal taps that only meet padding
    used = [k for k in range(5) if k not in left_out]
    assert (grad_full[:, :, left_out] == 0).all() and (grad_full[:, :, used].abs().sum((0, 1, 3, 4)) > 0).all()


def test_map_batches_are_the_stored_maps_in_ram_or_streamed(separable_store):
    """A map head sees exactly the stored maps as float32, whether they are held in RAM
    (channels-last) or read from the store every pass."""
    from vidstore.heads.data import MapSource

    store = FeatureStore.open(str(separable_store))
    rows = store.rows().filter(pl.col("status") == "done")
    stored = store.read(16, "layer4").astype(np.float32)  # every row of the store, in row order
    positions = np.random.default_rng(0).permutation(rows.height)[:50]
    for cache_mb in (64, 0):
        source = MapSource(store, 16, "layer4", rows, cache_mb)
        assert source.describe()["maps_in_ram"] == (cache_mb > 0)
        seen = {}
        for taken, maps in source.batches(positions, 16, np.random.default_rng(1)):
            assert maps.dtype == torch.float32 and maps.shape[1:] == (32, 1, 3, 3)
            seen.update(zip(taken.tolist(), maps.numpy()))
        assert sorted(seen) == sorted(positions.tolist())
        for p, values in seen.items():
            assert np.array_equal(values, stored[rows["row"][p]])


def test_same_conv_exports_its_narrowed_kernel_and_traces_the_full_one_without_warnings():
    """torch.export records the narrowed kernel from the map's fixed (t, h, w); the TorchScript
    tracer, which cannot follow sizes, runs the full kernel: both give the eager output."""
    import warnings

    from vidstore.heads.zoo.inception import SameConv3d

    torch.manual_seed(0)
    conv = SameConv3d(6, 5, 5, padding=2).eval()
    maps, other = torch.randn(2, 6, 2, 3, 3), torch.randn(4, 6, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = torch.export.export(conv, (maps,), dynamic_shapes={"maps": {0: torch.export.Dim("batch", min=1)}})
    kernels = [n.args[1].meta["val"].shape for n in program.graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
    assert kernels == [(5, 6, 3, 5, 5)]  # t=2: the outer two temporal taps are left out
    with torch.no_grad():
        assert torch.allclose(program.module()(other), conv(other), atol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace itself is deprecated
            traced = torch.jit.trace(conv, maps)
        assert torch.allclose(traced(other), conv(other), atol=1e-5)
