"""Objectness + residual losses shared by RetinaNet-ResObj and the ResObj RPN, and their normaliser.

Both detectors hand (N, R) logits and {1, 0, -1} labels to :func:`objectness_loss_sums`, which runs the
cascade of ``cascade.py`` in the selected mode, writes the Figs. 2/4 training signals to detectron2's
EventStorage, and returns un-normalised loss sums; the detector divides them by
:class:`PositiveCountNormalizer`.
"""
from typing import Dict, Sequence

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .cascade import (
    GATE_MODES,
    CascadeOutput,
    cascade_statistics,
    final_objectness,
    residual_objectness_cascade,
    summed_objectness_loss,
)

require_detectron2("resobj.loss")
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["CASCADE_MODES", "check_cascade_head", "check_cascade_options", "objectness_loss_sums", "PositiveCountNormalizer"]

#: "paper": Algorithm 1 (gated cascade, one loss per step); "official": chenjoya/resobj@15da804
#: (one BCE on the summed logit, no gating, nothing detached).
CASCADE_MODES = ("paper", "official")


def check_cascade_head(head, cascade_mode: str, head_class: str) -> None:
    """A cascade head must expose ``num_steps`` and ``isolate_residual_grad``; the authors'-code mode
    trains one summed logit, so nothing may be detached.

    Raises:
        ValueError: naming the head or the setting and the fix.
    """
    for attr in ("num_steps", "isolate_residual_grad"):
        if not hasattr(head, attr):
            raise ValueError(f"head {type(head).__name__} has no attribute {attr!r}; use resobj.{head_class}.")
    if cascade_mode == "official" and head.isolate_residual_grad:
        raise ValueError(
            "cascade_mode='official' trains o_0 and the residuals through one summed logit, with nothing "
            "detached; set head.isolate_residual_grad=False (see configs/ResObj/"
            "retinanet_resobj_official_R_50_FPN_1x.py)."
        )


def check_cascade_options(cascade_mode: str, gate: str) -> None:
    """Raise a ValueError naming the bad option (shared by both detectors' constructors)."""
    if cascade_mode not in CASCADE_MODES:
        raise ValueError(f"cascade_mode={cascade_mode!r} is not one of {CASCADE_MODES}.")
    if gate not in GATE_MODES:
        raise ValueError(f"gate={gate!r} is not one of {GATE_MODES}.")


def objectness_loss_sums(
    objectness: Tensor,
    residuals: Sequence[Tensor],
    labels: Tensor,
    *,
    cascade_mode: str,
    gate: str,
    detach: bool,
    log_prefix: str,
) -> Dict[str, Tensor]:
    """Un-normalised objectness losses of one batch, plus EventStorage scalars.

    Args:
        objectness: (N, R) logits o_0.
        residuals: T tensors (N, R), residual logits r_1..r_T.
        labels: (N, R) anchor labels, 1 foreground, 0 background, -1 ignored.
        cascade_mode: "paper" or "official" (see :data:`CASCADE_MODES`).
        gate, detach: see :func:`resobj.cascade.residual_objectness_cascade` (paper mode only).
        log_prefix: EventStorage name prefix, e.g. "train/resobj/".

    Returns:
        paper mode: {"obj": L_obj, "res_t1": L_1, ..., "res_tT": L_T};
        official mode: {"obj": BCE of o_0 + sum_t r_t}.
        Every value is a scalar sum over anchors.
    """
    if cascade_mode == "paper":
        out = residual_objectness_cascade(objectness, residuals, labels, gate=gate, detach=detach)
        sums = {"obj": out.loss_obj}
        sums.update({f"res_t{t}": loss for t, loss in enumerate(out.loss_res, start=1)})
    else:
        sums = {"obj": summed_objectness_loss(objectness, residuals, labels)}
        # No gate in this mode: log the partial sums o_0 + r_1 + ... + r_t at each step instead.
        steps = [final_objectness(objectness, residuals, step=t) for t in range(len(residuals) + 1)]
        out = CascadeOutput(loss_obj=sums["obj"], loss_res=[], logits=steps, gates=[], min_pos=[])
    storage = get_event_storage()
    for name, value in cascade_statistics(out, labels).items():
        storage.put_scalar(log_prefix + name, value)
    return sums


class PositiveCountNormalizer:
    """Loss normaliser: the number of positive anchors of the batch, smoothed by an EMA.

    RetinaNet [13] and the paper's Detectron implementation divide by the number of foreground anchors;
    detectron2's RetinaNet (our baseline) smooths it with an EMA (momentum 0.9) because with 1-2 images
    per GPU the count varies a lot. Like detectron2 the EMA starts at ``initial`` (100) before the first
    batch, so step k divides by m^k * initial + (1 - m) * sum_j m^(k-j) * max(count_j, 1). Starting at
    the first batch's count instead makes a first batch with few or no positives divide by ~1 and gives
    a loss spike of the size of the whole negative BCE sum. ``momentum=0`` gives the plain per-batch
    count, max(count, 1), and ignores ``initial``. Counts are clamped to >= 1, so a batch without
    positives never divides by 0.

    With ``all_reduce=True`` the count is averaged over the workers of a multi-GPU run before use, so
    every worker divides by the same number and the result does not depend on how images are spread
    over GPUs; detectron2's RetinaNet and the authors' code normalise per GPU (``all_reduce=False``).
    """

    def __init__(self, *, momentum: float = 0.9, all_reduce: bool = True, initial: float = 100.0):
        """
        Args:
            momentum: EMA momentum m in [0, 1).
            all_reduce: average the count over workers before the update.
            initial: the EMA's value before the first batch (> 0; detectron2's 100, a COCO-scale count
                of positive anchors per batch of 16 images).
        """
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"loss normaliser momentum={momentum} must be in [0, 1).")
        if not initial > 0.0:
            raise ValueError(f"loss normaliser initial value {initial} must be > 0 (detectron2 uses 100).")
        self.momentum = momentum
        self.all_reduce = all_reduce
        self.value = float(initial)  # the current EMA

    def __call__(self, num_pos: Tensor) -> float:
        """Update with this batch's positive count (an integer tensor) and return the normaliser."""
        count = num_pos.detach().float()
        if self.all_reduce and comm.get_world_size() > 1:
            count = count.clone()
            torch.distributed.all_reduce(count)
            count = count / comm.get_world_size()
        count = max(count.item(), 1.0)
        self.value = self.momentum * self.value + (1.0 - self.momentum) * count
        return self.value
