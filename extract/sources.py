"""Building the samples table from the forms a labelled video collection comes in.

Forms of SOURCE:
  * the built-in demo dataset: a folder with ``demo.json`` and ``labels.csv``;
  * a CSV with columns ``path,label[,group]`` (paths relative to the CSV's folder; a path
    outside it is refused unless ``allow_outside``);
  * a folder tree ``SOURCE/<label>/**/*.mp4`` (also .mov .avi .mkv .webm .m4v, any case);
  * FVC metadata CSVs (``cascade_id,video_url,label``) plus ``--videos DIR`` of downloads,
    matched by the platform id in each URL.

Video ids are stable: a video's id never depends on which other files exist. It is the
path relative to the indexed root, '/'-separated, extension included (``real/a.mp4``;
for a CSV, relative to the CSV's folder; an allowed outside path is its absolute path),
or ``<platform>_<id>`` for FVC. So ids are unique by construction, and the same file keeps
its id when files are added.

Labels map to 0 = real, 1 = fake. An empty group cell gives the video its own group. Every
entry is recorded: one that is not a readable video file (missing, a directory, a broken
symlink, a symlink loop, unreadable, empty, not decodable) gets ``status=failed`` and a
reason, and indexing goes on. Each readable file also gets its ``size`` and a
``content_hash`` (of its size and its first and last MiB), which the split audit uses to
find identical files under different ids.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from vidstore.extract.video import VIDEO_SUFFIXES, VideoError, probe_video
from vidstore.extract.progress import progress

LABEL_VALUES = {"real": 0, "fake": 1, "0": 0, "1": 1}
FVC_EXCLUDED_LABELS = ("uncertain", "debunked", "parody")
FVC_COLUMNS = ("cascade_id", "video_url", "label")
PROBE_COLUMNS = {
    "width": pl.Int32,
    "height": pl.Int32,
    "fps": pl.Float64,
    "n_frames": pl.Int64,
    "duration": pl.Float64,
    "codec": pl.String,
    "bitrate": pl.Int64,
    "has_audio": pl.Boolean,
}


class SourceError(Exception):
    """A source that cannot be indexed: missing path, missing columns, unknown labels."""


@dataclass
class IndexSummary:
    form: str
    n_rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_label: dict[int, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"indexed {self.n_rows} videos ({self.form}): " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))]
        out.append("labels (ok videos): " + ", ".join(f"{'fake' if k else 'real'} {v}" for k, v in sorted(self.by_label.items())))
        if self.excluded:
            out.append("excluded: " + ", ".join(f"{v} {k}" for k, v in sorted(self.excluded.items())))
        return out + self.notes


# -- labels and ids ---------------------------------------------------------------------------


def map_labels(values: list[str], where: str) -> list[int]:
    """real/fake (or 0/1), case-insensitive, to 0/1; anything else is an error naming it."""
    normal = [str(v).strip().lower() for v in values]
    unknown = sorted({v for v in normal if v not in LABEL_VALUES})
    if unknown:
        raise SourceError(f"{where}: unknown label value(s) {unknown}; use real/fake (or 0/1)")
    return [LABEL_VALUES[v] for v in normal]


_URL_PATTERNS = (
    ("youtube", re.compile(r"(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/|v/)|youtu\.be/)([A-Za-z0-9_-]{11})")),
    ("facebook", re.compile(r"facebook\.com/.*?(?:/videos/(?:[^/?#]+/)?|video\.php\?(?:.*&)?v=|story_fbid=)(\d+)")),
    ("twitter", re.compile(r"(?:twitter|x)\.com/[^/]+/status(?:es)?/(\d+)")),
)


def parse_video_url(url: str) -> tuple[str, str] | None:
    """(platform, id) of a YouTube, Facebook or Twitter video URL; None if not recognised."""
    for platform, pattern in _URL_PATTERNS:
        match = pattern.search(url)
        if match:
            return platform, match.group(1)
    return None


def check_path(path: str | None) -> str:
    """Why ``path`` is not a readable regular file ("" when it is one)."""
    if path is None or not str(path).strip():
        return "empty path"
    try:
        info = os.stat(path)
    except RuntimeError:
        return "symlink loop"
    except OSError as err:
        if os.path.islink(path):
            return "symlink loop" if err.errno == 40 else "broken symlink (its target does not exist)"
        if err.errno == 40:
            return "symlink loop"
        if err.errno == 2:
            return f"no such file: {path}"
        return f"cannot read: {os.strerror(err.errno) if err.errno else err}"
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not a video file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return ""


HASH_SPAN = 1 << 20


def content_hash(path: str) -> tuple[int, str]:
    """(size, hash of the size and the first and last MiB): equal for identical files, cheap
    for large ones."""
    size = os.path.getsize(path)
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(HASH_SPAN))
        if size > HASH_SPAN:
            f.seek(max(HASH_SPAN, size - HASH_SPAN))
            digest.update(f.read(HASH_SPAN))
    return size, digest.hexdigest()


def _has_video_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def find_video_entries(folder: Path) -> list[Path]:
    """Every entry under ``folder`` whose name has a video suffix (any case), whatever it is:
    files, directories, broken or looping symlinks. Symlinked folders are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames + dirnames):
            if _has_video_suffix(name) and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _absolute(path: Path) -> Path:
    """The absolute, normalised path (.. and . resolved lexically; symlinks kept, never followed)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def relative_id(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` with '/' separators, or None when it lies outside."""
    try:
        return _absolute(path).relative_to(_absolute(root)).as_posix()
    except ValueError:
        return None


# -- the forms --------------------------------------------------------------------------------


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, infer_schema=False)
    except Exception as err:
        raise SourceError(f"cannot read CSV {path}: {str(err).splitlines()[0][:200]}") from None


def _from_labels_csv(path: Path, table: pl.DataFrame, summary: IndexSummary, allow_outside: bool) -> pl.DataFrame:
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise SourceError(f"{path} lacks column(s) {missing}; a labels CSV needs path,label[,group]")
    root = path.parent
    cells = [(c or "").strip() for c in table["path"].to_list()]
    paths = [_absolute(root / c) if c else None for c in cells]
    ids = []
    for row, (cell, p) in enumerate(zip(cells, paths), start=2):
        if p is None:
            ids.append(f"<empty path, {path.name} line {row}>")
            continue
        rel = relative_id(p, root)
        if rel is None and not allow_outside:
            raise SourceError(
                f"{path} line {row}: {cell} lies outside the CSV's folder {root}; move the CSV above its videos "
                "or pass --allow-outside (ids are then absolute paths)"
            )
        ids.append(rel if rel is not None else p.as_posix())
    repeated = [v for v, n in Counter(ids).items() if n > 1]
    if repeated:
        raise SourceError(f"{path}: {len(repeated)} file(s) appear on several rows (e.g. {repeated[0]}); each video must appear once")
    labels = map_labels(table["label"].to_list(), str(path))
    groups = table["group"].cast(pl.String).to_list() if "group" in table.columns else [None] * len(ids)
    empty = [i for i, g in enumerate(groups) if g is None or not g.strip()]
    for i in empty:
        groups[i] = ids[i]
    if empty and "group" in table.columns:
        summary.notes.append(f"{len(empty)} rows with an empty group cell got their own group (the video id)")
    extra = table.drop([c for c in ("path", "label", "group") if c in table.columns])
    base = pl.DataFrame(
        {"video_id": ids, "path": [str(p) if p else "" for p in paths], "label": labels, "group": groups},
        schema={"video_id": pl.String, "path": pl.String, "label": pl.Int64, "group": pl.String},
    )
    return pl.concat([base, extra], how="horizontal")


def _from_folder_tree(folder: Path) -> pl.DataFrame:
    label_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise SourceError(f"{folder} has no label folders; expected {folder}/real/*.mp4 and {folder}/fake/*.mp4")
    unknown = [d.name for d in label_dirs if d.name.lower() not in LABEL_VALUES]
    if unknown:
        raise SourceError(f"{folder}: unknown label folder(s) {unknown}; name them real and fake (or 0 and 1)")
    paths, labels = [], []
    for label_dir in label_dirs:
        found = find_video_entries(label_dir)
        paths += found
        labels += [LABEL_VALUES[label_dir.name.lower()]] * len(found)
    if not paths:
        raise SourceError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)}) under its label folders")
    ids = [relative_id(p, folder) for p in paths]
    return pl.DataFrame({"video_id": ids, "path": [str(_absolute(p)) for p in paths], "label": labels, "group": ids})


def _merge_cascades(videos: list[str], cascades: list[str]) -> dict[str, str]:
    """Cascades that share a video are one near-duplicate group: union-find over cascades."""
    parent: dict[str, str] = {c: c for c in cascades}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    first_cascade: dict[str, str] = {}
    for video, cascade in zip(videos, cascades):
        if video in first_cascade:
            a, b = find(first_cascade[video]), find(cascade)
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            first_cascade[video] = cascade
    members: dict[str, set[str]] = {}
    for c in parent:
        members.setdefault(find(c), set()).add(c)
    return {c: "+".join(sorted(members[find(c)], key=_cascade_order)) for c in parent}


def _cascade_order(cascade: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"([a-z]+)(\d+)", cascade)
    return (match.group(1), int(match.group(2)), "") if match else (cascade, 0, cascade)


def _from_fvc(csvs: list[Path], videos_dir: Path | None, summary: IndexSummary) -> pl.DataFrame:
    if videos_dir is None:
        raise SourceError("FVC metadata needs --videos DIR, the folder of downloaded videos")
    if not videos_dir.is_dir():
        raise SourceError(f"--videos {videos_dir} is not a folder")
    table = pl.concat([_read_csv(p).select(FVC_COLUMNS) for p in csvs])
    parsed = [parse_video_url(u) for u in table["video_url"].to_list()]
    bad = [u for u, p in zip(table["video_url"].to_list(), parsed) if p is None]
    if bad:
        summary.excluded["unrecognised URLs"] = len(bad)
    table = table.with_columns(
        pl.Series("platform", [p[0] if p else None for p in parsed], dtype=pl.String),
        pl.Series("platform_id", [p[1] if p else None for p in parsed], dtype=pl.String),
        pl.col("label").str.strip_chars().str.to_lowercase(),
    ).filter(pl.col("platform_id").is_not_null())
    table = table.with_columns((pl.col("platform") + "_" + pl.col("platform_id")).alias("video_id"))
    # groups come from every row, excluded labels too: a shared video links its cascades
    group_of = _merge_cascades(table["video_id"].to_list(), table["cascade_id"].to_list())
    table = table.with_columns(pl.col("cascade_id").replace_strict(group_of).alias("group"))

    known = set(LABEL_VALUES) | set(FVC_EXCLUDED_LABELS)
    unknown = sorted(set(table["label"].to_list()) - known)
    if unknown:
        raise SourceError(f"FVC metadata: unknown label value(s) {unknown}; expected real, fake, {', '.join(FVC_EXCLUDED_LABELS)}")
    per_video = table.group_by("video_id", maintain_order=True).agg(
        pl.col("label").unique().alias("labels"),
        pl.col("video_url").first(),
        pl.col("platform").first(),
        pl.col("platform_id").first(),
        pl.col("cascade_id").unique().sort().str.join(";").alias("cascade_id"),
        pl.col("group").first(),
    )
    n_conflicting = int((per_video["labels"].list.len() > 1).sum())
    if n_conflicting:
        summary.excluded["videos with conflicting labels"] = n_conflicting
    per_video = per_video.filter(pl.col("labels").list.len() == 1).with_columns(pl.col("labels").list.first().alias("label"))
    for label, count in Counter(per_video["label"].to_list()).items():
        if label in FVC_EXCLUDED_LABELS:
            summary.excluded[f"label {label}"] = count
    per_video = per_video.filter(pl.col("label").is_in(["real", "fake"])).drop("labels")

    files = _index_downloads(videos_dir)
    paths = [files.get(pid) for pid in per_video["platform_id"].to_list()]
    return per_video.with_columns(
        pl.Series("path", [str(_absolute(p)) if p else None for p in paths], dtype=pl.String),
        pl.col("label").replace_strict(LABEL_VALUES, return_dtype=pl.Int8),
    )


def _index_downloads(folder: Path) -> dict[str, Path]:
    """Platform id -> file: the id as the file's stem, a folder name on its path, or '[id]' in the name."""
    found: dict[str, Path] = {}
    for path in sorted(find_video_entries(folder), key=lambda p: bool(check_path(str(p)))):  # readable files first
        keys = [path.stem, *re.findall(r"\[([A-Za-z0-9_-]+)\]", path.name)]
        keys += [part for part in path.relative_to(folder).parts[:-1]]
        for key in keys:
            found.setdefault(key, path)
    return found


def _detect_form(sources: list[Path]) -> str:
    for source in sources:
        if not source.exists():
            raise SourceError(f"source not found: {source}")
    if len(sources) == 1 and sources[0].is_dir():
        folder = sources[0]
        if (folder / "demo.json").is_file() and (folder / "labels.csv").is_file():
            return "demo"
        return "folder"
    if all(s.is_file() and s.suffix.lower() == ".csv" for s in sources):
        headers = [set(_read_csv(s).columns) for s in sources]
        if all(set(FVC_COLUMNS) <= h for h in headers):
            return "fvc"
        if len(sources) == 1:
            return "csv"
        raise SourceError("several sources are only accepted as FVC metadata CSVs (cascade_id,video_url,label)")
    raise SourceError("SOURCE must be a dataset folder, a labels CSV, or FVC metadata CSV(s)")


# -- the table --------------------------------------------------------------------------------


def _probe_all(paths: list[str | None], show_progress: bool) -> pl.DataFrame:
    records = []
    for path in progress(paths, "probe", "video", show=show_progress):
        if path is None:
            records.append({"status": "missing", "reason": "no downloaded file"})
            continue
        reason = check_path(path)
        if reason:
            records.append({"status": "failed", "reason": reason})
            continue
        try:
            size, digest = content_hash(path)
            records.append({"status": "ok", "reason": "", **probe_video(path), "size": size, "content_hash": digest})
        except VideoError as err:
            records.append({"status": "failed", "reason": str(err)})
        except OSError as err:  # the file went away or became unreadable while indexing
            records.append({"status": "failed", "reason": f"cannot read: {os.strerror(err.errno) if err.errno else err}"})
    schema = {"status": pl.String, "reason": pl.String, **PROBE_COLUMNS, "size": pl.Int64, "content_hash": pl.String}
    return pl.DataFrame(records, schema=schema)


def build_index(
    sources: list[str | Path], *, videos_dir: str | Path | None = None, progress: bool = False, allow_outside: bool = False
) -> tuple[pl.DataFrame, IndexSummary]:
    """The samples table for ``sources``: one row per video, probed, with status and reason."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise SourceError("no SOURCE given")
    form = _detect_form(sources)
    summary = IndexSummary(form=form)
    if form == "demo":
        table = _from_labels_csv(sources[0] / "labels.csv", _read_csv(sources[0] / "labels.csv"), summary, allow_outside)
    elif form == "csv":
        table = _from_labels_csv(sources[0], _read_csv(sources[0]), summary, allow_outside)
    elif form == "folder":
        table = _from_folder_tree(sources[0])
    else:
        table = _from_fvc(sources, Path(videos_dir) if videos_dir else None, summary)
    if table.height == 0:
        raise SourceError("no labelled videos found in the source")
    probed = _probe_all(table["path"].to_list(), progress)
    table = table.with_columns(pl.col("label").cast(pl.Int8), pl.col("group").cast(pl.String))
    leading = ["video_id", "path", "label", "group", "status", "reason"]
    out = pl.concat([table, probed], how="horizontal")
    out = out.select(leading + [c for c in out.columns if c not in leading])
    summary.n_rows = out.height
    summary.by_status = dict(Counter(out["status"].to_list()))
    summary.by_label = dict(Counter(out.filter(pl.col("status") == "ok")["label"].to_list()))
    return out, summary


def write_index(table: pl.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out)
    return out
