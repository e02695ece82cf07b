"""The index on each input form: demo folder, folder tree, labels CSV, FVC metadata."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from conftest import SHARED_FVC, index_coded_frames, write_video
from extract.demo_data import make_demo_dataset
from extract.sources import SourceError, build_index, parse_video_url, write_index

LEADING = ["video_id", "path", "label", "group", "status", "reason"]
PROBED = ["width", "height", "fps", "n_frames", "duration", "codec", "bitrate", "has_audio"]


def small_video(path, n=12):
    return write_video(path, index_coded_frames(n, 48, 64), fps=12)


def test_demo_folder(tmp_path):
    make_demo_dataset(tmp_path / "demo", 6, seed=1, width=64, height=48, n_frames=16)
    table, summary = build_index([tmp_path / "demo"])
    assert summary.form == "demo"
    assert table.columns[:6] == LEADING and set(PROBED) <= set(table.columns)
    assert table.height == 6 and (table["status"] == "ok").all()
    assert set(table["label"].to_list()) <= {0, 1}
    assert {"manipulation", "edit"} <= set(table.columns)
    assert (table["width"] > 0).all() and (table["codec"] == "h264").all()
    out = write_index(table, tmp_path / "samples.parquet")
    assert pl.read_parquet(out).equals(table)


def test_folder_tree_with_a_corrupt_file(tmp_path, corrupt_files):
    small_video(tmp_path / "tree" / "real" / "a.mp4")
    small_video(tmp_path / "tree" / "fake" / "sub" / "b.mov")
    shutil.copy(corrupt_files["truncated"], tmp_path / "tree" / "fake" / "c.mp4")
    (tmp_path / "tree" / "fake" / "notes.txt").write_text("not a video")
    table, summary = build_index([tmp_path / "tree"])
    assert summary.form == "folder"
    rows = {r["video_id"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["label"] == 0 and rows["b"]["label"] == 1
    assert rows["a"]["status"] == "ok" and rows["a"]["n_frames"] == 12
    assert rows["c"]["status"] == "failed" and rows["c"]["reason"]
    assert rows["c"]["width"] is None
    assert summary.by_status == {"ok": 2, "failed": 1}


def test_folder_tree_unknown_label_folder(tmp_path):
    small_video(tmp_path / "tree" / "maybe" / "a.mp4")
    with pytest.raises(SourceError, match="unknown label folder.*maybe"):
        build_index([tmp_path / "tree"])


def test_labels_csv_with_groups_and_missing_file(tmp_path):
    small_video(tmp_path / "v" / "x.mp4")
    small_video(tmp_path / "v" / "y.mp4")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,group\nv/x.mp4,Real,g1\nv/y.mp4,fake,g1\nv/gone.mp4,1,g2\n")
    table, summary = build_index([csv])
    assert summary.form == "csv"
    assert table["label"].to_list() == [0, 1, 1]
    assert table["group"].to_list() == ["g1", "g1", "g2"]
    assert table["status"].to_list() == ["ok", "ok", "failed"]
    assert "no such file" in table["reason"][2]


def test_labels_csv_errors(tmp_path):
    bad_label = tmp_path / "bad_label.csv"
    bad_label.write_text("path,label\na.mp4,sketchy\n")
    with pytest.raises(SourceError, match="unknown label value.*sketchy"):
        build_index([bad_label])
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("path,kind\na.mp4,real\n")
    with pytest.raises(SourceError, match=r"lacks column\(s\) \['label'\]"):
        build_index([no_label])
    with pytest.raises(SourceError, match="not found"):
        build_index([tmp_path / "nowhere"])


def test_real_videos_in_a_csv(tmp_path, shared_videos):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{'real' if i % 2 else 'fake'}\n" for i, p in enumerate(shared_videos)))
    table, _ = build_index([csv])
    assert (table["status"] == "ok").all() and table["has_audio"].all()
    assert table["video_id"].to_list() == [p.stem for p in shared_videos]


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://www.youtube.com/watch?v=Y7MJlmbnLQA", ("youtube", "Y7MJlmbnLQA")),
        ("https://youtu.be/Y7MJlmbnLQA?t=3", ("youtube", "Y7MJlmbnLQA")),
        ("https://www.youtube.com/watch?feature=share&v=hZ5Kt-ffkA0", ("youtube", "hZ5Kt-ffkA0")),
        ("https://www.facebook.com/lioncityfeed/videos/916632151837497/", ("facebook", "916632151837497")),
        ("https://www.facebook.com/video.php?v=10153231379946729", ("facebook", "10153231379946729")),
        ("https://twitter.com/DannyDutch/status/668495176038510592", ("twitter", "668495176038510592")),
        ("https://example.com/clip.mp4", None),
    ],
)
def test_parse_video_url(url, expected):
    assert parse_video_url(url) == expected


def test_fvc_metadata_with_downloads(tmp_path):
    meta = tmp_path / "fvc.csv"
    meta.write_text(
        "cascade_id,video_url,label\n"
        "f0,https://www.youtube.com/watch?v=AAAAAAAAAAA,fake\n"
        "f0,https://www.facebook.com/page/videos/111/,fake\n"
        "f1,https://www.youtube.com/watch?v=BBBBBBBBBBB,fake\n"
        "f1,https://www.youtube.com/watch?v=AAAAAAAAAAA,fake\n"  # shared with f0: one group
        "r0,https://twitter.com/u/status/222,real\n"
        "r0,https://www.youtube.com/watch?v=CCCCCCCCCCC,uncertain\n"
        "r1,https://www.youtube.com/watch?v=DDDDDDDDDDD,real\n"
        "r1,https://www.youtube.com/watch?v=EEEEEEEEEEE,parody\n"
    )
    dl = tmp_path / "dl"
    small_video(dl / "youtube" / "AAAAAAAAAAA" / "video.mp4")  # the original FVC1 layout
    small_video(dl / "facebook" / "111.mp4")  # id as file name
    small_video(dl / "Some title [BBBBBBBBBBB].mp4")  # yt-dlp's default name
    small_video(dl / "twitter" / "222.mp4")
    table, summary = build_index([meta], videos_dir=dl)
    assert summary.form == "fvc"
    rows = {r["video_id"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"youtube_AAAAAAAAAAA", "facebook_111", "youtube_BBBBBBBBBBB", "twitter_222", "youtube_DDDDDDDDDDD"}
    assert {rows[v]["group"] for v in ("youtube_AAAAAAAAAAA", "facebook_111", "youtube_BBBBBBBBBBB")} == {"f0+f1"}
    assert rows["youtube_AAAAAAAAAAA"]["cascade_id"] == "f0;f1"
    assert rows["twitter_222"]["label"] == 0 and rows["twitter_222"]["status"] == "ok"
    assert rows["youtube_DDDDDDDDDDD"]["status"] == "missing"
    assert summary.excluded == {"label uncertain": 1, "label parody": 1}


def test_fvc_needs_the_videos_folder(tmp_path):
    meta = tmp_path / "fvc.csv"
    meta.write_text("cascade_id,video_url,label\nf0,https://youtu.be/AAAAAAAAAAA,fake\n")
    with pytest.raises(SourceError, match="--videos"):
        build_index([meta])


def test_real_fvc_metadata_groups_and_exclusions(tmp_path):
    if not SHARED_FVC.is_dir():
        pytest.skip("../shared/data/fvc is not present")
    (tmp_path / "dl").mkdir()
    table, summary = build_index([SHARED_FVC / "FVC.csv", SHARED_FVC / "FVC_dup.csv"], videos_dir=tmp_path / "dl")
    assert (table["status"] == "missing").all()  # nothing downloaded
    assert table["video_id"].n_unique() == table.height
    assert set(table["label"].unique().to_list()) == {0, 1}
    assert summary.excluded["label uncertain"] == 340 and summary.excluded["label parody"] > 0
    # cascades that share a video merge into one group (FJcVcV46XBE is in f138, f139, f140)
    group = table.filter(pl.col("video_id") == "youtube_FJcVcV46XBE")["group"][0]
    assert {"f138", "f139", "f140"} <= set(group.split("+"))
