"""Crash-safe resume, many writers, growth: the store ends up the same bytes every way.

Extraction runs as a real subprocess; it is killed with SIGKILL at several points and
restarted, run as two ranks (--shard and torchrun), and grown from a shorter samples
table; each resulting store is compared value for value with one uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, TINY, indexed_demo
from vidstore.configs import load_config
from vidstore.extract.job import run_extract
from vidstore.extract.sources import write_index
from vidstore.store import FeatureStore, validate_store

# 12 videos, 2 per shard: 6 shards; one augmented variant per video
SETS = TINY + ["extract.shard_videos=2"]
CLI_SETS = [arg for item in SETS for arg in ("--set", item)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    samples, table = indexed_demo(root, 12, seed=5)
    reference = root / "reference.zarr"
    run_extract(samples, reference, load_config(ROOT / "configs/demo.yaml", SETS), progress=False)
    return {"root": root, "samples": samples, "reference": FeatureStore.open(str(reference)), "table": table}


def extract_cmd(samples, store, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "extract", "--samples", str(samples), "--store", str(store),
            "-c", str(ROOT / "configs/demo.yaml"), *CLI_SETS, *extra]


def assert_same_store(store: FeatureStore, reference: FeatureStore) -> None:
    assert store.rows().drop("row").equals(reference.rows().drop("row"))
    assert (store.rows()["status"] == "done").all()
    for scale in reference.scales:
        for name in reference.array_names(scale):
            assert np.array_equal(store.read(scale, name), reference.read(scale, name), equal_nan=True), (scale, name)
    assert validate_store(store).ok


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL the job as soon as ``ready()`` is true (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def first_lease(store_path):  # the first shard's lease: the group leases/000000
    return store_path / "leases" / "000000" / "zarr.json"


def n_markers(store_path) -> int:
    done = store_path / "done"  # a marker is the group done/<shard>
    return len(list(done.glob("*/zarr.json"))) if done.is_dir() else 0


@pytest.mark.parametrize(
    "point",
    ["store being created", "first shard being computed", "between a shard's data and its marker", "after 1 shard", "after 4 shards"],
)
def test_sigkill_then_restart_gives_the_same_store(data, tmp_path, point):
    store_path = tmp_path / "killed.zarr"
    first_data = store_path / "s32" / "embedding" / "c" / "0" / "0"  # shard 0's file of one array
    ready = {
        "store being created": lambda: (store_path / "zarr.json").exists(),
        # the first shard's lease is taken: its videos are being decoded and computed
        "first shard being computed": lambda: first_lease(store_path).exists(),
        "between a shard's data and its marker": lambda: first_data.exists() and n_markers(store_path) == 0
        and first_lease(store_path).exists(),
        "after 1 shard": lambda: n_markers(store_path) >= 1,
        "after 4 shards": lambda: n_markers(store_path) >= 4,
    }[point]
    env = dict(os.environ)
    if point == "between a shard's data and its marker":  # the writer waits there long enough to be killed
        env["VIDSTORE_TEST_PAUSE_BEFORE_MARKER"] = "60"
    proc = subprocess.Popen(extract_cmd(data["samples"], store_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    kill_when(proc, ready)
    left = n_markers(store_path)
    assert left < 6
    if point in ("first shard being computed", "between a shard's data and its marker"):
        assert left == 0 and first_lease(store_path).exists()  # the killed process's lease stays behind
        if point == "between a shard's data and its marker":
            assert first_data.exists()
    again = subprocess.run(extract_cmd(data["samples"], store_path), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{2 * left} already done" in again.stdout or (left == 0 and "0 already done" in again.stdout)
    assert_same_store(FeatureStore.open(str(store_path)), data["reference"])


def test_two_writers_with_shard_flags(data, tmp_path):
    store_path = tmp_path / "two.zarr"
    procs = [subprocess.Popen(extract_cmd(data["samples"], store_path, "--shard", f"{i}/2"), stdout=subprocess.PIPE, text=True) for i in (1, 0)]
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert "(rank 1 of 2)" in outputs[0] and "3 shards written" in outputs[0]
    store = FeatureStore.open(str(store_path))
    assert {m["rank"] for m in store.markers().values()} == {0, 1}
    assert_same_store(store, data["reference"])


def test_torchrun_two_processes_on_cpu(data, tmp_path):
    store_path = tmp_path / "torchrun.zarr"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun ships with torch"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", *extract_cmd(data["samples"], store_path)[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = FeatureStore.open(str(store_path))
    assert {m["rank"] for m in store.markers().values()} == {0, 1}
    assert_same_store(store, data["reference"])


def test_growth_computes_only_the_new_videos(data, tmp_path):
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    first = write_index(data["table"].head(7), tmp_path / "first.parquet")  # 7 videos: shard 3 is short
    store_path = tmp_path / "grown.zarr"
    before = run_extract(first, store_path, cfg, progress=False)
    assert before.n_done == 7
    after = run_extract(data["samples"], store_path, cfg, progress=False)
    assert after.n_done == 5 and after.n_skipped == 7  # video 7 joins short shard 3; 6 kept there
    assert_same_store(FeatureStore.open(str(store_path)), data["reference"])


def test_another_config_is_refused_naming_the_keys(data, tmp_path):
    store_path = tmp_path / "cfg.zarr"
    shutil.copytree(data["reference"].path, store_path)
    proc = subprocess.run(extract_cmd(data["samples"], store_path, "--set", "clip.frames=6", "--set", "augment.variants=2"),
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "differs in: augment.variants, clip.frames" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_command_catches_a_damaged_shard(data, tmp_path):
    store_path = tmp_path / "damaged.zarr"
    shutil.copytree(data["reference"].path, store_path)
    ok = subprocess.run([sys.executable, str(ROOT / "cli.py"), "store", "validate", str(store_path)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("ok")
    shard_file = sorted(p for p in (store_path / "s32" / "layer4" / "c").rglob("*") if p.is_file())[2]
    data_bytes = bytearray(shard_file.read_bytes())
    data_bytes[100:140] = bytes(40)
    shard_file.write_bytes(bytes(data_bytes))
    bad = subprocess.run([sys.executable, str(ROOT / "cli.py"), "store", "validate", str(store_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "s32/layer4 shard 2" in bad.stdout and "cannot be read" in bad.stdout


def test_extract_into_an_fsspec_url(data):
    url = "memory://extract-test/store.zarr"
    run_extract(data["samples"], url, load_config(ROOT / "configs/demo.yaml", SETS), progress=False)
    assert_same_store(FeatureStore.open(url), data["reference"])


@pytest.mark.parametrize(
    "env,flag,expected",
    [
        ({}, None, (0, 1)),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, None, (1, 4)),  # torchrun
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}, None, (2, 3)),
        ({"RANK": "1", "WORLD_SIZE": "4"}, "2/3", (2, 3)),  # the flag wins
    ],
)
def test_rank_and_world_come_from_the_launcher(monkeypatch, env, flag, expected):
    from vidstore.extract.job import resolve_rank

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_rank(flag) == expected


def test_bad_shard_flag_is_a_clear_error():
    from vidstore.extract.job import ExtractError, resolve_rank

    with pytest.raises(ExtractError, match="must look like i/n"):
        resolve_rank("first")
    with pytest.raises(ExtractError, match="in 0..n-1"):
        resolve_rank("3/3")
