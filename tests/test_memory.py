"""Memory stays bounded by T and S, not by the video's length or resolution."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from extract.demo_data import write_long_video

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from extract.video import decode_clip
if {decode!r}:
    clip = decode_clip({path!r}, 8, 64)
    assert clip.n_unique == 8
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def peak_rss_mib(path, decode: bool) -> float:
    code = CHILD.format(root=str(ROOT), path=str(path), decode=decode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_decoding_a_long_hd_video_holds_only_the_clip(tmp_path):
    path = tmp_path / "long.mp4"
    n = write_long_video(path, seconds=16, fps=25, width=1280, height=720)
    whole_video_mib = n * 1280 * 720 * 3 / 2**20  # about 1.1 GiB if it were held
    extra = peak_rss_mib(path, decode=True) - peak_rss_mib(path, decode=False)
    assert whole_video_mib > 1000
    assert extra < 100, f"decoding took {extra:.0f} MiB over the baseline"
