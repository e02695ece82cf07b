"""Exports of a fine-tuned model, each checked by loading the written file; and loading them for ``predict``.

    model.pt2    torch.export (ExportedProgram): torch.export.load(path).module()(clips)
    model.onnx   the dynamo-based ONNX exporter, one self-contained file: onnxruntime, input "clips"
    model.ts     TorchScript (torch.jit.trace), only on request: torch deprecates it

Every export takes clips (B, 3, T, S, S) of any batch size B and returns B logits of "fake".
The check (``export_model``):

1. the eager model (CPU, float32, eval) is exported from an example batch of 2 clips
   (torch.export specialises a batch of 1, so the example has 2 for the batch to stay free);
2. the written file is loaded back as a user would (``torch.export.load``, onnxruntime,
   ``torch.jit.load``), never the exporter's object in memory;
3. it runs on fresh batches (1 and 3 clips, other values than the example) and its logits
   are compared with the eager model's on the same batches: the largest absolute
   difference is recorded, and above ``TOLERANCE`` the export fails with an ExportError.
   Without onnxruntime (a dev extra) the ONNX file is written and recorded as not checked.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

KINDS = ("pt2", "onnx", "torchscript")
FILES = {"pt2": "model.pt2", "onnx": "model.onnx", "torchscript": "model.ts"}
# Largest absolute difference allowed between an export's logits and the eager model's:
# a probability then moves by at most TOLERANCE / 4 (the slope of the sigmoid is <= 1/4).
TOLERANCE = 1e-3
EXAMPLE_BATCH = 2
FRESH_BATCHES = (1, 3)


class ExportError(ValueError):
    """An export that cannot be made, loaded or trusted; the message names it."""


def require_exporters(kinds: list[str]) -> None:
    """Fail before training, not after, when an export asked for cannot be made here."""
    if "onnx" in kinds and importlib.util.find_spec("onnxscript") is None:
        raise ExportError("finetune.export=[onnx] needs the onnxscript package (pip install 'vidstore[onnx]'), "
                          "or drop onnx from finetune.export")


def clip_batch(size: int, frames: int, scale: int, seed: int) -> torch.Tensor:
    """``size`` normalised-looking clips (B, 3, T, S, S) drawn from ``seed``."""
    return torch.randn(size, 3, frames, scale, scale, generator=torch.Generator().manual_seed(seed))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes={"clips": {0: batch}})
    torch.export.save(program, str(path))


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # torch 2.13's exporter deep-copies its own pytree specs, which warns about a deprecation
        # inside torch (2.14 does not); nothing the caller uses or could change
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
        # external_data=False: one file (the weights inside), as long as the model is under 2 GB
        torch.onnx.export(model, (example,), str(path), input_names=["clips"], output_names=["logits"],
                          dynamic_shapes={"clips": {0: batch}}, dynamo=True, external_data=False, verbose=False)


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.jit.trace(model, example).save(str(path))


WRITERS = {"pt2": _write_pt2, "onnx": _write_onnx, "torchscript": _write_torchscript}


def load_export(path: Path, kind: str, device: torch.device = torch.device("cpu")) -> Callable[[torch.Tensor], torch.Tensor]:
    """The written file as a function of clips -> logits (float32, on ``device`` for torch
    exports, on the CPU for ONNX), loaded with nothing from this project."""
    if kind == "pt2":
        module = torch.export.load(str(path)).module().to(device)
        return lambda clips: module(clips.to(device))
    if kind == "torchscript":
        module = torch.jit.load(str(path), map_location=device)
        return lambda clips: module(clips.to(device))
    if kind == "onnx":
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        session = onnxruntime.InferenceSession(str(path), providers=providers)
        return lambda clips: torch.from_numpy(session.run(["logits"], {"clips": clips.detach().cpu().float().numpy()})[0])
    raise ExportError(f"unknown export {kind!r}; choose from {', '.join(KINDS)}")


def _checker(kind: str) -> str | None:
    """What checks ``kind`` here ("onnxruntime 1.18.0"), or None when nothing can."""
    if kind == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    return f"torch {torch.__version__}"


def export_model(model: nn.Module, frames: int, scale: int, out: Path, kinds: list[str], seed: int = 0) -> dict:
    """Write each export in ``kinds`` to ``out`` and check it (see the module's docstring).
    Returns, per kind: file, sha256, max_abs_diff (None: not checked), checked_with,
    fresh_batches, tolerance."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ExportError(f"unknown export(s) {unknown}; choose from {list(KINDS)}")
    require_exporters(kinds)
    model = model.cpu().eval()
    example = clip_batch(EXAMPLE_BATCH, frames, scale, seed)
    fresh = [clip_batch(size, frames, scale, seed + 1 + i) for i, size in enumerate(FRESH_BATCHES)]
    with torch.no_grad():
        expected = [model(batch) for batch in fresh]
    done = {}
    for kind in dict.fromkeys(kinds):  # in order, once each
        path = out / FILES[kind]
        with torch.no_grad():
            try:
                WRITERS[kind](model, example, path)
            except Exception as err:
                line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise ExportError(f"the {kind} export of the model failed ({type(err).__name__}: {line})") from err
        entry = {"file": path.name, "sha256": file_sha256(path), "max_abs_diff": None, "checked_with": _checker(kind),
                 "fresh_batches": list(FRESH_BATCHES), "tolerance": TOLERANCE}
        if entry["checked_with"] is None:
            entry["checked_with"] = "not checked: onnxruntime is not installed"
        else:
            run = load_export(path, kind)
            with torch.no_grad():
                diffs = [float((run(batch).float() - want).abs().max()) for batch, want in zip(fresh, expected)]
            entry["max_abs_diff"] = max(diffs)
            if not entry["max_abs_diff"] <= TOLERANCE:  # NaN fails too
                raise ExportError(f"the {kind} export ({path}) gives logits {entry['max_abs_diff']:.2e} away from the eager model's "
                                  f"on fresh clips (tolerance {TOLERANCE:g}); model.yaml does not list it")
        done[kind] = entry
    return done
