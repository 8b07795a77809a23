"""The linear learning-rate scaling rule (Goyal et al.): lr ∝ total batch size.

Keeping an 8-GPU learning rate on 1-2 GPUs is the usual cause of NaN losses in detectron2 threads,
so train_net checks every run against the rate its recipe was tuned for. No detectron2 import.
"""
from typing import Optional

# Departures smaller than this fraction of the scaled rate are not worth a warning.
TOLERANCE = 0.2


def scaled_lr(reference_lr: float, reference_batch_size: int, total_batch_size: int) -> float:
    """The learning rate the linear scaling rule gives for ``total_batch_size``."""
    return reference_lr * total_batch_size / reference_batch_size


def lr_scaling_warning(
    lr: float, total_batch_size: int, reference_lr: float, reference_batch_size: int
) -> Optional[str]:
    """A warning when ``lr`` is not the linearly scaled reference rate (±20%), else None."""
    if min(lr, total_batch_size, reference_lr, reference_batch_size) <= 0:
        raise ValueError(
            f"lr={lr}, total_batch_size={total_batch_size}, reference lr={reference_lr} and reference "
            f"batch size={reference_batch_size} must all be positive."
        )
    expected = scaled_lr(reference_lr, reference_batch_size, total_batch_size)
    if abs(lr - expected) <= TOLERANCE * expected:
        return None
    return (
        f"optimizer.lr={lr:g} with dataloader.train.total_batch_size={total_batch_size}, but this recipe "
        f"uses lr {reference_lr:g} at batch {reference_batch_size}: the linear scaling rule gives "
        f"{expected:g}. A rate {lr / expected:.2g}x the scaled one often diverges (NaN losses) or trains "
        f"worse. Pass optimizer.lr={expected:g} (and scale train.max_iter by "
        f"{reference_batch_size}/{total_batch_size} to see the same number of images), or ignore this "
        "if the change is deliberate."
    )
