"""The index on each input form: demo folder, folder tree, labels CSV, FVC metadata."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from conftest import SHARED_FVC, index_coded_frames, write_video
from vidstore.extract.demo_data import make_demo_dataset
from vidstore.extract.sources import SourceError, build_index, parse_video_url, write_index

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
    assert set(rows) == {"real/a.mp4", "fake/sub/b.mov", "fake/c.mp4"}
    a, b, c = rows["real/a.mp4"], rows["fake/sub/b.mov"], rows["fake/c.mp4"]
    assert a["label"] == 0 and b["label"] == 1
    assert a["status"] == "ok" and a["n_frames"] == 12
    assert c["status"] == "failed" and c["reason"]
    assert c["width"] is None
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
    # outside the CSV's folder: refused unless allowed, then the absolute path is the id
    with pytest.raises(SourceError, match="outside the CSV's folder.*--allow-outside"):
        build_index([csv])
    table, _ = build_index([csv], allow_outside=True)
    assert (table["status"] == "ok").all() and table["has_audio"].all()
    assert table["video_id"].to_list() == [p.resolve().as_posix() for p in shared_videos]


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


# -- stable ids and entries that are not videos (issue 12) -------------------------------------


def test_ids_do_not_depend_on_other_files(tmp_path):
    """Adding a file whose stem collides, or one that differs only in extension, changes no id."""
    small_video(tmp_path / "tree" / "real" / "clip.mp4")
    small_video(tmp_path / "tree" / "fake" / "x.mp4")
    before, _ = build_index([tmp_path / "tree"])
    small_video(tmp_path / "tree" / "fake" / "sub" / "clip.mp4")  # same stem, other folder
    small_video(tmp_path / "tree" / "real" / "clip.mkv")  # same stem, other extension
    after, _ = build_index([tmp_path / "tree"])
    assert before["video_id"].to_list() == ["fake/x.mp4", "real/clip.mp4"]
    assert after["video_id"].to_list() == ["fake/sub/clip.mp4", "fake/x.mp4", "real/clip.mkv", "real/clip.mp4"]
    old = dict(zip(before["path"].to_list(), before["video_id"].to_list()))
    assert {p: v for p, v in zip(after["path"].to_list(), after["video_id"].to_list()) if p in old} == old
    assert after["video_id"].n_unique() == after.height and (after["status"] == "ok").all()


def test_csv_same_name_in_two_folders_are_two_videos(tmp_path):
    small_video(tmp_path / "a" / "clip.mp4")
    small_video(tmp_path / "b" / "clip.mp4", n=14)
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\n{tmp_path / 'a' / 'clip.mp4'},real\nb/clip.mp4,fake\n")
    table, _ = build_index([csv])  # an absolute path inside the CSV's folder is fine
    assert table["video_id"].to_list() == ["a/clip.mp4", "b/clip.mp4"]
    assert table["n_frames"].to_list() == [12, 14]
    csv.write_text("path,label\na/clip.mp4,real\n./a/../a/clip.mp4,fake\n")
    with pytest.raises(SourceError, match="appear on several rows.*a/clip.mp4"):
        build_index([csv])
    inner = tmp_path / "b" / "labels.csv"  # ../a is outside the CSV's folder
    inner.write_text("path,label\nclip.mp4,real\n../a/clip.mp4,fake\n")
    with pytest.raises(SourceError, match=r"line 3: \.\./a/clip.mp4 lies outside the CSV's folder.*--allow-outside"):
        build_index([inner])
    table, _ = build_index([inner], allow_outside=True)
    assert table["video_id"].to_list() == ["clip.mp4", (tmp_path / "a" / "clip.mp4").as_posix()]


def test_every_entry_with_a_video_suffix_is_recorded(tmp_path):
    import os

    tree = tmp_path / "tree"
    small_video(tree / "real" / "good.mp4")
    small_video(tree / "fake" / "LOUD.MP4")
    (tree / "fake" / "folder.mp4").mkdir(parents=True)
    os.symlink(tree / "fake" / "gone.mp4", tree / "fake" / "dangling.mp4")
    os.symlink(tree / "fake" / "loop_b.mp4", tree / "fake" / "loop_a.mp4")
    os.symlink(tree / "fake" / "loop_a.mp4", tree / "fake" / "loop_b.mp4")
    os.mkfifo(tree / "fake" / "pipe.mkv")
    (tree / "fake" / "empty.webm").write_bytes(b"")
    (tree / "fake" / "readme.txt").write_text("not a video")
    table, summary = build_index([tree])
    reasons = dict(zip(table["video_id"].to_list(), table["reason"].to_list()))
    status = dict(zip(table["video_id"].to_list(), table["status"].to_list()))
    assert set(reasons) == {
        "real/good.mp4", "fake/LOUD.MP4", "fake/folder.mp4", "fake/dangling.mp4", "fake/loop_a.mp4", "fake/loop_b.mp4",
        "fake/pipe.mkv", "fake/empty.webm",
    }
    assert status["real/good.mp4"] == status["fake/LOUD.MP4"] == "ok"
    assert reasons["fake/folder.mp4"] == "a directory, not a video file"
    assert reasons["fake/dangling.mp4"].startswith("broken symlink")
    assert reasons["fake/loop_a.mp4"] == reasons["fake/loop_b.mp4"] == "symlink loop"
    assert reasons["fake/pipe.mkv"].startswith("not a regular file")
    assert reasons["fake/empty.webm"] == "empty file (0 bytes)"
    assert summary.by_status == {"ok": 2, "failed": 6}


def test_csv_rows_that_are_not_files_are_recorded(tmp_path):
    import os

    small_video(tmp_path / "v" / "ok.mp4")
    os.symlink(tmp_path / "v" / "l2.mp4", tmp_path / "v" / "l1.mp4")
    os.symlink(tmp_path / "v" / "l1.mp4", tmp_path / "v" / "l2.mp4")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,group\nv/ok.mp4,real,g\nv/l1.mp4,fake,g\n,fake,h\nv/ok.mp4/..,real,\n")
    table, summary = build_index([csv])
    assert table["status"].to_list() == ["ok", "failed", "failed", "failed"]
    assert table["reason"].to_list()[1:] == ["symlink loop", "empty path", "a directory, not a video file"]
    assert table["video_id"].to_list()[:2] == ["v/ok.mp4", "v/l1.mp4"]
    # an empty group cell is the video's own group, never one shared "NaN" group
    assert table["group"].to_list() == ["g", "g", "h", table["video_id"][3]]
    assert any("1 rows with an empty group cell" in line for line in summary.lines())


def test_empty_group_cells_do_not_merge_videos(tmp_path):
    for name in ("a", "b", "c"):
        small_video(tmp_path / f"{name}.mp4")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,group\na.mp4,real,\nb.mp4,fake,\nc.mp4,fake,g1\n")
    table, summary = build_index([csv])
    assert table["group"].to_list() == ["a.mp4", "b.mp4", "g1"]
    assert "2 rows with an empty group cell got their own group (the video id)" in summary.lines()


def test_content_hash_finds_identical_files(tmp_path):
    import shutil as sh

    small_video(tmp_path / "tree" / "real" / "a.mp4")
    small_video(tmp_path / "tree" / "fake" / "b.mp4", n=13)
    sh.copy(tmp_path / "tree" / "real" / "a.mp4", tmp_path / "tree" / "fake" / "copy_of_a.mp4")
    table, _ = build_index([tmp_path / "tree"])
    hashes = dict(zip(table["video_id"].to_list(), table["content_hash"].to_list()))
    assert hashes["real/a.mp4"] == hashes["fake/copy_of_a.mp4"] != hashes["fake/b.mp4"]
    assert table["size"].to_list() == [(tmp_path / "tree" / v).stat().st_size for v in table["video_id"].to_list()]
