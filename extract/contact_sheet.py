"""A contact sheet of what the model sees: rows are variants, columns are sampled frames.

``vidstore clips VIDEO [--out DIR]`` decodes the video once, makes variants 0..K with
the configured policy, and writes ``DIR/<video>_clips.png`` (each row labelled with its
variant's ops and parameters) and ``DIR/<video>_clips.json`` (the parameters in full).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidstore.configs import Config
from vidstore.extract.clips import make_variant, variant_ops
from vidstore.extract.video import decode_clip

LABEL_HEIGHT = 14
GAP = 2


def describe_ops(ops: list[dict]) -> str:
    """``rotate(degrees=7.31) + drop(dropped=[2, 5])``: short numbers, every parameter."""
    if not ops:
        return "original"

    def short(value):
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, list):
            return "[" + ", ".join(short(v) for v in value) + "]"
        return str(value)

    return " + ".join(f"{o['op']}({', '.join(f'{k}={short(v)}' for k, v in o.items() if k != 'op')})" for o in ops)


def contact_sheet(rows: list[np.ndarray], labels: list[str]) -> Image.Image:
    """Rows of frames (each (T, S, S, 3) uint8) with a text line above each row."""
    n_frames, size = rows[0].shape[0], rows[0].shape[1]
    width = n_frames * size + (n_frames - 1) * GAP
    row_height = LABEL_HEIGHT + size + GAP
    sheet = Image.new("RGB", (width, len(rows) * row_height), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (frames, label) in enumerate(zip(rows, labels)):
        top = r * row_height
        draw.text((2, top + 1), label, fill=(235, 235, 235), font=font)
        for c, frame in enumerate(frames):
            sheet.paste(Image.fromarray(frame), (c * (size + GAP), top + LABEL_HEIGHT))
    return sheet


def write_contact_sheet(video: str | Path, cfg: Config, out_dir: str | Path, video_id: str | None = None) -> tuple[Path, Path]:
    """Decode ``video`` once, make its variants (seeded by ``video_id``, default the file's
    stem, as the index names it), write the PNG and the JSON of parameters."""
    video = Path(video)
    video_id = video_id or video.stem
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded = decode_clip(video, cfg.clip.frames, cfg.clip.size)
    plans = variant_ops(cfg.augment, video_id, cfg.clip.frames)
    rows = [make_variant(decoded.frames, decoded.box, ops) for ops in plans]
    labels = [f"v{k}: {describe_ops(ops)}" for k, ops in enumerate(plans)]
    png = out_dir / f"{video.stem}_clips.png"
    contact_sheet(rows, labels).save(png)
    meta = {
        "video": str(video),
        "video_id": video_id,
        "frames": cfg.clip.frames,
        "size": cfg.clip.size,
        "source_times": decoded.source_times.tolist(),
        "rotation": decoded.rotation,
        "frames_decoded": decoded.n_decoded,
        "variants": [{"variant": k, "ops": ops} for k, ops in enumerate(plans)],
    }
    params = out_dir / f"{video.stem}_clips.json"
    params.write_text(json.dumps(meta, indent=2) + "\n")
    return png, params
