"""TensorBoard event files beside a run (``train.tensorboard``) or a fine-tuned model
(``finetune.tensorboard``); TensorBoard itself is an optional extra (``vidstore[tensorboard]``).

``RUN/tensorboard/fold<k>-<stage>/``: one TensorBoard run per fit (``fold0-fit``,
``fold2-inner1``, ``fold2-refit``), so one chart per curve (train_loss, watch_loss,
watch_auc, lr by epoch; gbm's watch_loss and watch_auc by boosting round) overlays the
folds; the numbers are the run's ``metrics.jsonl``. ``RUN/tensorboard/summary/``: the
pooled metrics (``pooled/<metric>``, step 0) and each fold's (``fold/<metric>``, step =
fold). A run's events are written when its cross-validation ends, as its run folder is
made then; its epochs reach the log as they happen.

``OUT/tensorboard/``: fine-tuning's epochs as each ends (train_loss, holdout_loss,
holdout_auc, lr_head, seconds), and the final hold-out metrics (``holdout/<metric>``, step
= epochs run).

    tensorboard --logdir runs/        # every run's folds side by side
"""

from __future__ import annotations

import math
from pathlib import Path

from vidstore.configs import ConfigError

FOLDER = "tensorboard"
STEP_KEYS = ("epoch", "round")  # what a curve's records count in
TAG_KEYS = ("fold", "stage")  # which fit a record belongs to, not a value


def require_tensorboard(key: str) -> None:
    """A one-line error, before any training, when ``key`` asks for events and TensorBoard is not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(f"{key}=true needs TensorBoard: pip install 'vidstore[tensorboard]' (or tensorboard), or leave {key} false") from None


def open_writer(folder: str | Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def scalars(record: dict) -> dict[str, float]:
    """The record's finite numbers, what TensorBoard can plot (not its step or tags)."""
    return {
        key: float(value) for key, value in record.items()
        if key not in STEP_KEYS + TAG_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def write_scalars(writer, record: dict, step: int, prefix: str = "") -> None:
    for key, value in scalars(record).items():
        writer.add_scalar(prefix + key, value, step)


def write_run_events(run_dir: Path, curves: list[dict], fold_metrics: list[tuple[int, dict]], pooled: dict) -> Path:
    """``run_dir/tensorboard/``: a TensorBoard run per fit from the fold- and stage-tagged
    ``curves``, and ``summary/`` with ``fold_metrics`` ((fold, metrics) pairs) and ``pooled``."""
    root = Path(run_dir) / FOLDER
    fits: dict[str, list[dict]] = {}
    for record in curves:
        fits.setdefault(f"fold{record['fold']}-{record['stage']}", []).append(record)
    for name, records in fits.items():
        with open_writer(root / name) as writer:
            for i, record in enumerate(records, 1):  # a head of one's own may count in neither epochs nor rounds
                write_scalars(writer, record, int(next((record[k] for k in STEP_KEYS if k in record), i)))
    with open_writer(root / "summary") as writer:
        write_scalars(writer, pooled, 0, "pooled/")
        for fold, metrics in fold_metrics:
            write_scalars(writer, metrics, fold, "fold/")
    return root
