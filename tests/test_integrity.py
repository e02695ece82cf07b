"""Nothing lost, nothing leaked: the scenarios of issue 12, each on real files and stores.

- growing a store after a stem collision appends only the new file; a table whose ids
  changed for the same files is refused, never appended;
- identical files under two ids in two folds are reported by the split audit;
- leases: one holder per shard, stale ones taken over; two real extract processes on the
  same rank compute every video once;
- a done marker over missing or other data is found by `store validate` and recomputed;
- disk full (a real small tmpfs, and an injected ENOSPC) is one line and resumes;
- hostile model files (absurd LightGBM, pickles, YAML tags) are one line, exit 2;
- decode workers: a hung decode is killed at the time limit, a crashed one recorded.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zarr

from conftest import ROOT, TINY, run_cli, write_video
from vidstore.configs import load_config
from vidstore.extract.job import StoreMismatch, run_extract
from vidstore.extract.sources import build_index, write_index
from vidstore.extract.workers import decode_in_workers
from vidstore.store import FeatureStore, Leases, validate_store

SETS = TINY + ["extract.shard_videos=2"]
CLI_SETS = [a for item in SETS for a in ("--set", item)]


def textured(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (48 + n, 64 + n, 3), dtype=np.uint8)
    return np.stack([base[i : i + 48, i : i + 64] for i in range(n)])


def tree(root: Path, names: dict[str, int]) -> Path:
    for rel, seed in names.items():
        write_video(root / rel, textured(8, seed), fps=8)
    return root


def index(root: Path, out: Path) -> Path:
    table, _ = build_index([root])
    return write_index(table, out)


# -- ids and growth ---------------------------------------------------------------------------


def test_growing_after_a_stem_collision_appends_only_the_new_file(tmp_path):
    root = tree(tmp_path / "v", {"real/a.mp4": 1, "real/b.mp4": 2, "fake/c.mp4": 3, "fake/d.mp4": 4})
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    store_path = tmp_path / "s.zarr"
    run_extract(index(root, tmp_path / "s1.parquet"), store_path, cfg, progress=False)
    before = FeatureStore.open(str(store_path)).rows()
    write_video(root / "fake/sub/a.mp4", textured(8, 9), fps=8)  # the stem of real/a.mp4 again
    report = run_extract(index(root, tmp_path / "s2.parquet"), store_path, cfg, progress=False)
    after = FeatureStore.open(str(store_path)).rows()
    assert report.n_done == 1 and after.height == before.height + 2  # one video, two variants
    assert after.head(before.height).drop("status", "reason").equals(before.drop("status", "reason"))
    assert after["video_id"].unique().sort().to_list() == ["fake/c.mp4", "fake/d.mp4", "fake/sub/a.mp4", "real/a.mp4", "real/b.mp4"]
    assert validate_store(FeatureStore.open(str(store_path))).ok


def test_a_table_that_renames_the_stores_videos_is_refused(tmp_path):
    root = tree(tmp_path / "v", {"real/a.mp4": 1, "real/b.mp4": 2, "fake/c.mp4": 3, "fake/d.mp4": 4})
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    samples = index(root, tmp_path / "s1.parquet")
    store_path = tmp_path / "s.zarr"
    run_extract(samples, store_path, cfg, progress=False)
    renamed = pl.read_parquet(samples).with_columns(pl.col("video_id").str.replace(r"\.mp4$", "").alias("video_id"))
    renamed.write_parquet(tmp_path / "renamed.parquet")
    n_rows = FeatureStore.open(str(store_path)).n_rows
    with pytest.raises(StoreMismatch, match=r"holds 4 of these videos under other ids \(e.g. fake/c.mp4 -> fake/c,"):
        run_extract(tmp_path / "renamed.parquet", store_path, cfg, progress=False)
    assert FeatureStore.open(str(store_path)).n_rows == n_rows  # nothing appended
    proc = run_cli("extract", "--samples", str(tmp_path / "renamed.parquet"), "--store", str(store_path),
                   "-c", "configs/demo.yaml", *CLI_SETS, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "under other ids" in proc.stderr


def test_split_audit_reports_identical_files_in_two_folds(tmp_path):
    from vidstore.heads.train import train_head

    names = {f"{'real' if i % 2 else 'fake'}/v{i}.mp4": i for i in range(10)}
    root = tree(tmp_path / "v", names)
    shutil.copy(root / "real/v1.mp4", root / "fake/copy_of_v1.mp4")  # the same bytes, another id and label folder
    cfg = load_config(ROOT / "configs/demo.yaml", SETS + ["train.folds=2", "train.bootstrap=0", "train.features=[handcrafted]",
                                                          f"train.out={tmp_path / 'runs'}"])
    samples = index(root, tmp_path / "s.parquet")
    run_extract(samples, tmp_path / "s.zarr", cfg, progress=False)
    run_dir, summary = train_head("logreg", tmp_path / "s.zarr", cfg)
    audit = summary.split_audit
    # the two ids are two groups; whichever folds they land in, the audit says whether they are split
    assert audit["identical_files"] >= 1
    folds = pl.read_parquet(run_dir / "oof.parquet").filter(pl.col("video_id").is_in(["real/v1.mp4", "fake/copy_of_v1.mp4"]))
    split = folds["fold"].n_unique() == 2
    assert audit["leaking_identical_files"] == (1 if split else 0)
    if split:
        assert "real/v1.mp4" in " ".join(audit["examples"])


# -- leases and two writers -------------------------------------------------------------------


def write_lease(root: Path, shard: int, lease: dict) -> None:
    """A lease as another process leaves it: the attributes of the group leases/<shard>."""
    (root / "leases" / f"{shard:06d}").mkdir(parents=True, exist_ok=True)
    (root / "leases" / f"{shard:06d}" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": lease}))


def test_a_lease_has_one_holder_and_a_dead_holders_lease_is_taken_over(tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    root = str(tmp_path)
    first, second = Leases(fs, root, timeout=60), Leases(fs, root, timeout=60)
    try:
        assert first.acquire(3) and not second.acquire(3)  # live holder: refused
        lease = json.loads((tmp_path / "leases" / "000003" / "zarr.json").read_text())["attributes"]  # a Zarr group's attributes
        assert lease["owner"] == first.owner and lease["pid"] == os.getpid() and lease["host"] == socket.gethostname()
        first.release(3)
        assert second.acquire(3)  # released: free
        second.release(3)
        # a holder on this host that is not running any more: taken over at once
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        stale = {"owner": "gone", "host": socket.gethostname(), "pid": int(dead.stdout), "rank": 0, "taken_at": time.time(),
                 "heartbeat": time.time()}
        write_lease(tmp_path, 4, stale)
        assert first.acquire(4) and first.holds(4)
        # a holder on another host: taken over only once its heartbeat is older than the timeout
        other = {**stale, "host": "another-node", "pid": 1}
        write_lease(tmp_path, 5, other)
        assert not first.acquire(5)
        write_lease(tmp_path, 5, {**other, "heartbeat": time.time() - 61})
        assert first.acquire(5)
        # the heartbeat keeps a held lease fresh
        quick = Leases(fs, root, timeout=0.5)
        assert quick.acquire(6)
        t0 = quick.read(6)["heartbeat"]
        time.sleep(0.6)
        assert quick.read(6)["heartbeat"] > t0
        assert not second.acquire(6) or second.timeout < 0.5
        quick.close()
        assert not (tmp_path / "leases" / "000006").exists()  # given back: no file, no empty folder
    finally:
        first.close()
        second.close()


def test_two_extract_processes_on_one_rank_compute_every_video_once(tmp_path):
    names = {f"{'real' if i % 2 else 'fake'}/v{i:02d}.mp4": i for i in range(12)}
    root = tree(tmp_path / "v", names)
    samples = index(root, tmp_path / "s.parquet")
    store_path = tmp_path / "s.zarr"
    run_cli("store", "init", "--samples", str(samples), "--store", str(store_path), "-c", "configs/demo.yaml", *CLI_SETS)
    cmd = [sys.executable, str(ROOT / "cli.py"), "extract", "--samples", str(samples), "--store", str(store_path),
           "-c", str(ROOT / "configs/demo.yaml"), *CLI_SETS, "--shard", "0/1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert not any("Traceback" in err for _, err in outs)
    import re

    done = [int(m.group(1)) if (m := re.search(r"(\d+) videos extracted", out)) else 0 for out, _ in outs]
    assert sum(done) == 12, outs  # no video computed by both
    store = FeatureStore.open(str(store_path))
    assert (store.rows()["status"] == "done").all() and validate_store(store).ok
    assert [p.name for p in (store_path / "leases").iterdir()] == ["zarr.json"]  # every lease given back
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # markers and leases are Zarr groups: nothing foreign in the hierarchy
        members = dict(zarr.open_group(str(store_path), mode="r").members(max_depth=None))
    assert "done/000000" in members and "leases" in members
    reference = tmp_path / "ref.zarr"
    run_extract(samples, reference, load_config(ROOT / "configs/demo.yaml", SETS), progress=False)
    ref = FeatureStore.open(str(reference))
    for scale in ref.scales:
        for name in ref.array_names(scale):
            assert np.array_equal(store.read(scale, name), ref.read(scale, name), equal_nan=True), (scale, name)


# -- markers over missing or other data ------------------------------------------------------


def test_a_marker_over_missing_or_other_data_is_found_and_recomputed(tmp_path):
    root = tree(tmp_path / "v", {f"{'real' if i % 2 else 'fake'}/v{i}.mp4": i for i in range(6)})
    samples = index(root, tmp_path / "s.parquet")
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    store_path = tmp_path / "s.zarr"
    run_extract(samples, store_path, cfg, progress=False)
    store = FeatureStore.open(str(store_path))
    original = store.read(16, "handcrafted").copy()
    # 1. shard 1's handcrafted file is gone, its marker stays (NaN is a value in that array)
    (store_path / "s16" / "handcrafted" / "c" / "1" / "0").unlink()
    report = validate_store(FeatureStore.open(str(store_path)))
    assert any("over missing data" in p and "s16/handcrafted" in p for p in report.problems), report.problems
    with pytest.warns(UserWarning, match="shard 1 is recomputed: s16/handcrafted has no data"):
        again = run_extract(samples, store_path, cfg, progress=False)
    assert again.n_done == 2 and validate_store(FeatureStore.open(str(store_path))).ok
    assert np.array_equal(FeatureStore.open(str(store_path)).read(16, "handcrafted"), original, equal_nan=True)
    # 2. shard 2's embedding holds other (valid, finite) values than were written
    emb = FeatureStore.open(str(store_path), mode="r+").array(32, "embedding")
    start, stop = 4 * 2, 6 * 2
    emb[start:stop] = emb[start:stop] + 1
    report = validate_store(FeatureStore.open(str(store_path)))
    assert report.problems == ["s32/embedding shard 2 (rows 8..12) differs from the checksum its marker recorded"]
    assert run_extract(samples, store_path, cfg, progress=False).n_done == 0  # a plain run trusts markers (cheap)
    proc = run_cli("store", "validate", str(store_path), check=False)
    assert proc.returncode == 1 and "differs from the checksum" in proc.stdout and "extract --verify" in proc.stderr
    fixed = run_cli("extract", "--samples", str(samples), "--store", str(store_path), "-c", "configs/demo.yaml", *CLI_SETS, "--verify")
    assert "warning: shard 2 is recomputed: s32/embedding of shard 2 differs from its marker's checksum" in fixed.stderr
    assert "2 videos extracted" in fixed.stdout and "Traceback" not in fixed.stderr
    assert validate_store(FeatureStore.open(str(store_path))).ok


# -- disk full --------------------------------------------------------------------------------


def test_disk_full_is_one_line_and_the_store_resumes(tmp_path, monkeypatch):
    root = tree(tmp_path / "v", {f"{'real' if i % 2 else 'fake'}/v{i}.mp4": i for i in range(6)})
    samples = index(root, tmp_path / "s.parquet")
    cfg = load_config(ROOT / "configs/demo.yaml", SETS + ["extract.writer_threads=1"])
    store_path = tmp_path / "s.zarr"
    calls = {"n": 0}
    real_write = FeatureStore.write_shard

    def full_on_second(self, shard, values):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(store_path / "s32"))
        return real_write(self, shard, values)

    monkeypatch.setattr(FeatureStore, "write_shard", full_on_second)
    from vidstore.store import StoreError

    with pytest.raises(StoreError, match=r"no space left on the device of .* while writing shard 1 .*MiB uncompressed.*resumes"):
        run_extract(samples, store_path, cfg, progress=False)
    monkeypatch.setattr(FeatureStore, "write_shard", real_write)
    kept = set(FeatureStore.open(str(store_path)).markers())
    assert kept in ({0}, {0, 2})  # shard 1 never marked; nothing written before it lost
    again = run_extract(samples, store_path, cfg, progress=False)
    assert again.n_skipped == 2 * len(kept) and validate_store(FeatureStore.open(str(store_path))).ok
    assert (FeatureStore.open(str(store_path)).rows()["status"] == "done").all()


def test_a_real_full_disk_is_one_line(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        root = tree(tmp_path / "v", {f"{'real' if i % 2 else 'fake'}/v{i}.mp4": i for i in range(8)})
        samples = index(root, tmp_path / "s.parquet")
        proc = run_cli("extract", "--samples", str(samples), "--store", str(mount / "s.zarr"), "-c", "configs/demo.yaml",
                       *CLI_SETS, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert "Traceback" not in proc.stderr and lines[-1].startswith("error: no space left on the device"), proc.stderr[-2000:]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# -- hostile artifacts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gbm_run(tmp_path_factory):
    from vidstore.heads.train import train_head

    tmp = tmp_path_factory.mktemp("gbm_run")
    root = tree(tmp / "v", {f"{'real' if i % 2 else 'fake'}/v{i}.mp4": i for i in range(8)})
    samples = index(root, tmp / "s.parquet")
    cfg = load_config(ROOT / "configs/demo.yaml", SETS + ["train.folds=2", "train.bootstrap=0", "train.features=[handcrafted]",
                                                          "train.gbm.n_estimators=5", f"train.out={tmp / 'runs'}"])
    run_extract(samples, tmp / "s.zarr", cfg, progress=False)
    run_dir, _ = train_head("gbm", tmp / "s.zarr", cfg)
    return {"run": run_dir, "videos": root}


def predict_cli(model: Path, videos: Path, *extra: str):
    return run_cli("predict", str(model), str(videos), "--workers", "0", *CLI_SETS, *extra, check=False)


def test_an_absurd_lightgbm_model_is_one_line_and_does_not_abort(gbm_run, tmp_path):
    import re

    run = tmp_path / "run"
    shutil.copytree(gbm_run["run"], run)
    model = next(run.glob("checkpoints/fold*/model.txt"))
    model.write_text(re.sub(r"num_leaves=\d+", "num_leaves=999999999", model.read_text(), count=1))
    proc = predict_cli(run, gbm_run["videos"])
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines() == [f"error: {model}: tree 0 has num_leaves=999999999, outside 1..131072"]



def test_a_lightgbm_file_that_kills_its_parser_kills_only_the_child_process(tmp_path):
    """A tree whose arrays are consistent but point at a feature that does not exist passes
    the text checks; LightGBM then calls std::terminate (SIGABRT). Parsed here, in-process,
    that would end this test run: the child process dies instead, and we get one line."""
    import re

    import lightgbm as lgb

    from vidstore.store.artifacts import ArtifactError, load_lightgbm_model

    rng = np.random.default_rng(0)
    X = rng.random((300, 5))
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(X, (X[:, 0] > 0.5).astype(int)), 3)
    good = tmp_path / "good.txt"
    booster.save_model(str(good))
    assert np.allclose(load_lightgbm_model(good).predict(X), booster.predict(X))
    bad = tmp_path / "bad.txt"
    text = good.read_text()
    first = re.search(r"split_feature=(\S+ \S+ \S+)", text).group(1)
    bad.write_text(text.replace(f"split_feature={first}", "split_feature=9999999 0 0", 1))
    with pytest.raises(ArtifactError, match=rf"^LightGBM cannot parse {re.escape(str(bad))} \(killed by signal 6"):
        load_lightgbm_model(bad)


def test_a_refused_pickle_says_which_file_and_never_to_disable_the_safeguard(tmp_path):
    import torch

    from vidstore.heads.finetune import load_init

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"")
    torch.save({"head.x": torch.zeros(1), "evil": _Evil()}, folder / "weights.pt")
    from vidstore.store.artifacts import ArtifactError, load_torch_file

    with pytest.raises(ArtifactError) as caught:
        load_torch_file(folder / "weights.pt", what="model weights file")
    text = str(caught.value)
    assert str(folder / "weights.pt") in text and "not a valid model weights file" in text
    assert "weights_only" not in text and "trust" not in text and "\n" not in text
    assert load_init  # the fine-tuning init reads weights through the same loader


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_hostile_model_folder_files_are_one_line(gbm_run, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text("version: 1\nhead: !!python/object/apply:os.system ['echo pwned']\n")
    proc = predict_cli(model, gbm_run["videos"])
    assert proc.returncode == 2 and "pwned" not in proc.stdout, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: model spec {model / 'model.yaml'} is not plain YAML (line 2): could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"
    ]
    proc = predict_cli(gbm_run["run"], gbm_run["videos"], "--workers", "-1")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: --workers must be 0 (decode in this process) or more, got -1"]
    proc = run_cli("config", "show", "--set", "clip.frames=true", check=False)
    assert proc.returncode == 2 and "expects a number, got the boolean True" in proc.stderr


# -- decode workers ---------------------------------------------------------------------------


def _sleep_or_die(task):
    if task == "hang":
        time.sleep(600)
    if task == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"reason": "", "value": task}


def _die_when_idle(task):
    if task == "then die":  # after this result is sent, while the pool is not looking
        threading.Timer(0.3, os._exit, (3,)).start()
    return {"reason": "", "value": task}


def test_a_worker_that_dies_while_idle_is_replaced_and_the_next_video_decoded():
    seen = []
    for _, result in decode_in_workers(_die_when_idle, ["then die", "a", "b"], 1, timeout=30, prefetch=1):
        seen.append(result.get("value") or result["reason"])
        time.sleep(1.0)  # the pool waits here, its worker idle: it dies before the next task is given
    assert seen == ["then die", "a", "b"]


def test_spawned_workers_that_cannot_start_stop_the_pool_with_one_message_not_failed_videos(tmp_path):
    # a spawned worker imports the calling script: without a __main__ guard each one runs the
    # job again and dies starting. That is no video's fault: no result may blame a video
    script = tmp_path / "unguarded.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport cli\n"
        "from vidstore.extract.workers import decode_in_workers\n"
        "print('results', list(decode_in_workers(str, ['a', 'b', 'c'], 2, start='spawn')))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "results" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vidstore.extract.workers.WorkersCannotStart: decode workers stop before they start (3 in a row"), last
    assert "if __name__ == '__main__':" in last
    guarded = tmp_path / "guarded.py"
    guarded.write_text(script.read_text().replace("print(", "if __name__ == '__main__':\n    print("))
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "results [(0, 'a'), (1, 'b'), (2, 'c')]" in ok.stdout, ok.stderr[-2000:]


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_decode_workers_replace_a_hung_or_crashed_worker_and_keep_order(start):
    # spawned workers (NVDEC's) take seconds to start: that time must not count against a video's limit
    tasks = ["a", "hang", "b", "crash", "c", "d"]
    started = time.monotonic()
    out = list(decode_in_workers(_sleep_or_die, tasks, 2, timeout=2, prefetch=2, start=start))
    assert time.monotonic() - started < (30 if start == "fork" else 120)
    assert [i for i, _ in out] == list(range(6))
    results = [r for _, r in out]
    assert [r.get("value") for r in results] == ["a", None, "b", None, "c", "d"]
    assert results[1]["reason"] == "decode timed out after 2 s"
    assert results[3]["reason"] == "decoder process died (SIGSEGV)"
