"""Object-confidence target and losses (paper §3.2, Eq. 9 and 13, Table 2).

Pure torch, no detectron2 import, so it is testable anywhere.

The target of the confidence branch is the IoU between the box predicted from a positive anchor
(its regression deltas decoded onto the anchor) and the ground-truth box matched to that anchor.
Every loss is a sum over anchors divided by ``normalizer`` (the number of positive anchors, Eq. 9).

================  =====================================================================  ================
``loss_type``     per-anchor loss, p = sigmoid(logit), y = IoU target                    Table 2 row
================  =====================================================================  ================
``"ce"``          BCE(p, y) on positives (Eq. 9; the paper's choice)                     CE loss
``"ce_w"``        BCE(p, y) on positives + w * BCE(p, 0) on negatives, w=1e-4             CELoss^w
``"l1"``          abs(y - p) on positives                                                L1 loss
``"smooth_l1"``   0.5 (y - p)^2 / beta if abs(y - p) < beta else abs(y - p) - beta/2      Smooth L1 loss
``"l2"``          (y - p)^2 on positives                                                 L2 loss
``"gfocal"``      abs(y - p)^gamma * BCE(p, y) on positives, gamma=2 (Eq. 13)            GFocal loss
================  =====================================================================  ================
"""

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CONF_LOSSES", "aligned_box_iou", "check_conf_loss_args", "object_confidence_loss"]

CONF_LOSSES = ("ce", "ce_w", "l1", "smooth_l1", "l2", "gfocal")


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of each box in ``boxes1`` with the box at the same index in ``boxes2``.

    The diagonal of detectron2's ``pairwise_iou`` in O(P) instead of O(P^2), differentiable in both
    inputs. A pair with zero union (two empty boxes) gets IoU 0 instead of NaN.

    Args:
        boxes1, boxes2: (P, 4) boxes in (x0, y0, x1, y1) format.

    Returns:
        (P,) IoUs in [0, 1].
    """
    assert boxes1.shape == boxes2.shape and boxes1.shape[-1] == 4, (boxes1.shape, boxes2.shape)
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area1 + area2 - inter).clamp(min=eps)


def check_conf_loss_args(
    loss_type: str, neg_weight: float, gfocal_gamma: float, smooth_l1_beta: float
) -> None:
    """Raise ValueError for an unknown loss name or an out-of-range hyper-parameter."""
    if loss_type not in CONF_LOSSES:
        raise ValueError(
            f"Unknown confidence loss {loss_type!r}; choose one of {CONF_LOSSES} (Table 2)."
        )
    if neg_weight < 0:
        raise ValueError(f"conf_neg_weight={neg_weight} must be >= 0; Table 2 uses 1e-4 and 1e-3.")
    if gfocal_gamma < 0:
        raise ValueError(f"conf_gfocal_gamma={gfocal_gamma} must be >= 0 (Eq. 13; 2.0 by default).")
    if smooth_l1_beta <= 0:
        raise ValueError(
            f"conf_smooth_l1_beta={smooth_l1_beta} must be > 0; use loss 'l1' for beta 0."
        )


def object_confidence_loss(
    pos_logits: Tensor,
    pos_targets: Tensor,
    *,
    normalizer: Union[float, Tensor],
    loss_type: str = "ce",
    neg_logits: Optional[Tensor] = None,
    neg_weight: float = 1e-4,
    gfocal_gamma: float = 2.0,
    smooth_l1_beta: float = 1.0,
) -> Tensor:
    """Summed confidence loss divided by ``normalizer`` (Eq. 9 for ``"ce"``).

    Args:
        pos_logits: (P,) confidence logits of the positive anchors.
        pos_targets: (P,) IoU targets in [0, 1]. If it requires grad (target not detached), the
            gradient of the loss flows into whatever produced it (the box branch).
        normalizer: the number of positive anchors (>= 1), or any positive scalar.
        loss_type: one of :data:`CONF_LOSSES`.
        neg_logits: (Q,) confidence logits of the negative anchors; needed by ``"ce_w"`` only.
        neg_weight: w of ``"ce_w"``, the weight of each negative's BCE with target 0.
        gfocal_gamma: gamma of ``"gfocal"``.
        smooth_l1_beta: beta of ``"smooth_l1"``, on the probability scale.

    Returns:
        Scalar tensor. 0 (still attached to the graph) when there are no positives and, for
        ``"ce_w"``, no negatives.
    """
    check_conf_loss_args(loss_type, neg_weight, gfocal_gamma, smooth_l1_beta)
    pos_targets = pos_targets.to(pos_logits.dtype)
    if loss_type in ("ce", "ce_w", "gfocal"):
        per_anchor = F.binary_cross_entropy_with_logits(pos_logits, pos_targets, reduction="none")
        if loss_type == "gfocal":
            per_anchor = (pos_targets - pos_logits.sigmoid()).abs().pow(gfocal_gamma) * per_anchor
    else:
        diff = (pos_targets - pos_logits.sigmoid()).abs()
        if loss_type == "l1":
            per_anchor = diff
        elif loss_type == "l2":
            per_anchor = diff * diff
        else:  # smooth_l1
            per_anchor = torch.where(
                diff < smooth_l1_beta,
                0.5 * diff * diff / smooth_l1_beta,
                diff - 0.5 * smooth_l1_beta,
            )
    loss = per_anchor.sum()
    if loss_type == "ce_w":
        if neg_logits is None:
            raise ValueError("Confidence loss 'ce_w' needs the negatives' logits (neg_logits).")
        loss = loss + neg_weight * F.binary_cross_entropy_with_logits(
            neg_logits, torch.zeros_like(neg_logits), reduction="sum"
        )
    return loss / normalizer
