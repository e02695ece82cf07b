"""The installed distribution: one `vidstore` package, a `vidstore` command, packaged configs.

Built from this checkout as a user's `pip install` would (a wheel), installed into a folder
of its own, and run from a folder that has its own `configs/` package, as ML projects often do.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

import vidstore  # noqa: E402 (conftest made this checkout the package)


def _can_build_here() -> bool:
    """This environment's setuptools can build the wheel without pip's build isolation (which
    fetches setuptools from the registry): setuptools >= 70.1 has bdist_wheel built in, older
    ones need the wheel package (a Python 3.11 venv starts with setuptools 65.5 and no wheel)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2] if p.isdigit())
    return version >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from this checkout, and it installed (without dependencies: this
    venv has them) into a site folder of its own."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy of what git would commit: an in-tree build would leave build/ in the checkout
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0:
        for name in listed.stdout.splitlines():
            if (ROOT / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
    else:  # not a git checkout
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "demo_out", "runs", "__pycache__"))
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(root / "wheels"), str(source)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (root / "wheels").glob("vidstore-*.whl")
    site = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    user = root / "user_project"  # a project with a configs package of its own
    (user / "configs").mkdir(parents=True)
    (user / "configs" / "__init__.py").write_text("raise ImportError('this is the user project configs package')\n")
    # the site first, before a PYTHONPATH this run already has (the GPU node's dependencies live in one)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"wheel": wheel, "site": site, "user": user, "env": {**os.environ, "PYTHONPATH": path}}


def test_the_wheel_holds_one_vidstore_package_and_its_configs(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {name.split("/")[0] for name in names} == {"vidstore", f"vidstore-{vidstore.__version__}.dist-info"}
    for expected in ("vidstore/__init__.py", "vidstore/cli.py", "vidstore/store/feature_store.py", "vidstore/heads/zoo/gbm.py",
                     "vidstore/configs/default.yaml", "vidstore/configs/demo.yaml", "vidstore/configs/fvc.yaml",
                     "vidstore/configs/sweeps/gbm.yaml"):
        assert expected in names
    assert not [name for name in names if name.startswith(("vidstore/tests/", "vidstore/benchmarks/"))]
    entry_points = zipfile.ZipFile(installed["wheel"]).read(f"vidstore-{vidstore.__version__}.dist-info/entry_points.txt").decode()
    assert "vidstore = vidstore.cli:main" in entry_points
    assert sorted(p.name for p in installed["site"].iterdir() if p.name != "bin") == ["vidstore", f"vidstore-{vidstore.__version__}.dist-info"]


def test_the_vidstore_command_runs_beside_a_configs_package_of_the_user(installed):
    command = installed["site"] / "bin" / "vidstore"
    run = lambda *args: subprocess.run([str(command), *args], capture_output=True, text=True, cwd=installed["user"],  # noqa: E731
                                       env=installed["env"])
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"vidstore {vidstore.__version__}", version.stderr
    where = subprocess.run([sys.executable, "-c", "import vidstore.cli, vidstore; print(vidstore.__file__)"], capture_output=True,
                           text=True, cwd=installed["user"], env=installed["env"])
    assert where.stdout.strip() == str(installed["site"] / "vidstore" / "__init__.py")  # the installed copy, not the checkout
    shown = run("config", "show", "-c", "demo", "--set", "demo.videos=7")
    assert shown.returncode == 0, shown.stderr
    assert "videos: 7" in shown.stdout and "also_train:" in shown.stdout  # the packaged demo.yaml, then the override
    help_text = run("train", "--help")
    assert help_text.returncode == 0 and "Registered heads: gbm, inception, logreg" in help_text.stdout
    missing = run("config", "show", "-c", "nope")
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "error: config file not found: nope (a path, or one installed with vidstore: default, demo, fvc)")


def test_a_packaged_config_by_name_equals_its_file_and_a_path_wins():
    from vidstore.configs import find_config, load_config

    assert load_config("demo").to_dict() == load_config(ROOT / "configs" / "demo.yaml").to_dict()
    assert load_config("fvc.yaml").to_dict() == load_config(ROOT / "configs" / "fvc.yaml").to_dict()
    assert find_config("gbm", "grid file", "sweeps").read_text() == (ROOT / "configs" / "sweeps" / "gbm.yaml").read_text()


def test_a_file_of_the_user_named_like_a_packaged_config_is_the_one_read(tmp_path, monkeypatch):
    from vidstore.configs import load_config

    monkeypatch.chdir(tmp_path)
    Path("demo").write_text("demo:\n  videos: 9\n")
    assert load_config("demo").demo.videos == 9  # an existing path names a file
    Path("demo").unlink()
    assert load_config("demo").demo.videos == load_config(ROOT / "configs" / "demo.yaml").demo.videos
