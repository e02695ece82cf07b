"""Where the networks run: one rule for every command (extract, finetune, predict).

``--device`` (or the config's ``device``) is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
``auto`` takes CUDA when there is any and the CPU otherwise; ``cuda`` is the process's own
GPU: ``cuda:LOCAL_RANK`` under torchrun (one process per GPU), else ``cuda:0``; ``cuda:N``
is that GPU whatever the rank. Asking for CUDA where there is none is an error, not a
silent fall-back to the CPU.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a device is picked, not when the config is validated
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEVICE_HELP = f"{DEVICE_CHOICES}; auto: CUDA when present; cuda: cuda:LOCAL_RANK under torchrun, else cuda:0"
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


class DeviceError(ValueError):
    """A device that is not a choice, or not on this machine."""


def device_name(requested: str, cuda_devices: int, local_rank: str | None = None) -> str:
    """The device ``requested`` means on a machine with ``cuda_devices`` GPUs, for a process
    whose torchrun ``LOCAL_RANK`` is ``local_rank`` (None: not under torchrun)."""
    if not re.match(DEVICE_PATTERN, requested):
        raise DeviceError(f"device {requested!r} is not one of {DEVICE_CHOICES}")
    if requested == "cpu" or (requested == "auto" and cuda_devices == 0):
        return "cpu"
    if cuda_devices == 0:
        raise DeviceError(f"device {requested} was asked for but CUDA is not available here (use cpu or auto)")
    if requested.startswith("cuda:"):
        index, why = int(requested.split(":")[1]), f"device {requested}"
    elif local_rank is not None:
        if not local_rank.isdigit():
            raise DeviceError(f"LOCAL_RANK={local_rank!r} is not a GPU index (torchrun sets it to 0, 1, ...)")
        index, why = int(local_rank), f"LOCAL_RANK {local_rank} (torchrun)"
    else:
        index, why = 0, f"device {requested}"
    if index >= cuda_devices:
        raise DeviceError(f"{why} asks for cuda:{index}; this machine has {cuda_devices} CUDA device(s), cuda:0 to cuda:{cuda_devices - 1}")
    return f"cuda:{index}"


def pick_device(requested: str = "auto") -> "torch.device":
    """:func:`device_name` on this machine and process."""
    import torch

    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return torch.device(device_name(requested, cuda_devices, os.environ.get("LOCAL_RANK")))
