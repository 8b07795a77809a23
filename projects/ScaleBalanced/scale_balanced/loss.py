"""The scale-balanced loss (Eq. 2): per-anchor weighted versions of the detectors' losses.

Pure functions on tensors; the weights come from :mod:`.weights`. No detectron2 import at module level
(the DIoU/CIoU box losses import it lazily), so this module is usable and testable without it.
With all weights equal to 1 each function returns what the vanilla loss returns (see tests).
"""
from typing import Optional

import torch
from fvcore.nn import giou_loss, sigmoid_focal_loss_jit, smooth_l1_loss
from torch import Tensor
from torch.nn import functional as F

__all__ = ["weighted_focal_loss", "weighted_bce_loss", "weighted_cross_entropy", "weighted_box_loss"]


def weighted_focal_loss(
    logits: Tensor, targets: Tensor, weights: Tensor, *, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Σ_a w_a · Σ_k FL(logits[a, k], targets[a, k]) (Eq. 2 with L = focal loss), summed.

    Args:
        logits: (A, K) class logits of the valid (non-ignored) anchors of the batch.
        targets: (A, K) one-hot float targets (all zeros for background anchors).
        weights: (A,) per-anchor weight (W_i on positives, 1 on negatives).
        alpha, gamma: focal loss parameters (RetinaNet: 0.25, 2).
    """
    loss = sigmoid_focal_loss_jit(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    return (loss * weights[:, None]).sum()


def weighted_bce_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Σ_a w_a · BCE(logits[a], targets[a]), summed. All (A,) tensors (RPN objectness)."""
    return F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="sum")


def weighted_cross_entropy(logits: Tensor, gt_classes: Tensor, weights: Tensor) -> Tensor:
    """Σ_p w_p · CE(logits[p], gt_classes[p]), summed (0 when P = 0). logits (P, K+1), gt_classes and
    weights (P,)."""
    return (F.cross_entropy(logits, gt_classes, reduction="none") * weights).sum()


def weighted_box_loss(
    anchors: Tensor,
    pred_deltas: Tensor,
    gt_boxes: Tensor,
    weights: Tensor,
    *,
    box2box_transform,
    loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> Tensor:
    """Σ_a w_a · L_box(a) over the given (positive) anchors, summed (Eq. 2 applied to regression).

    Same per-anchor losses as detectron2's ``_dense_box_regression_loss``, kept per anchor so they
    can be weighted.

    Args:
        anchors: (P, 4) anchor (or proposal) boxes of the positive anchors, XYXY.
        pred_deltas: (P, 4) predicted deltas for them.
        gt_boxes: (P, 4) their matched ground-truth boxes, XYXY.
        weights: (P,) W of each anchor's object.
        box2box_transform: a detectron2 ``Box2BoxTransform`` (``get_deltas`` / ``apply_deltas``).
        loss_type: "smooth_l1", "giou", "diou" or "ciou".
        smooth_l1_beta: beta of the smooth L1 loss (0 = L1).
    """
    if loss_type == "smooth_l1":
        gt_deltas = box2box_transform.get_deltas(anchors, gt_boxes)
        per_anchor = smooth_l1_loss(pred_deltas, gt_deltas, beta=smooth_l1_beta, reduction="none").sum(1)
    else:
        pred_boxes = box2box_transform.apply_deltas(pred_deltas, anchors)
        if loss_type == "giou":
            fn = giou_loss
        elif loss_type in ("diou", "ciou"):
            from detectron2.layers.losses import ciou_loss, diou_loss

            fn = diou_loss if loss_type == "diou" else ciou_loss
        else:
            raise ValueError(f"Unsupported box loss type {loss_type!r}; use smooth_l1, giou, diou or ciou.")
        per_anchor = fn(pred_boxes, gt_boxes, reduction="none")
    return (per_anchor * weights.to(per_anchor.dtype)).sum()


def normalizer_value(weights_of_positives: Tensor, mode: str) -> Optional[float]:
    """The per-step loss normaliser before any EMA: #positives ("num_pos") or ΣW ("weight_sum").

    Args:
        weights_of_positives: (P,) weights of the positive anchors of the batch.
    """
    if mode == "num_pos":
        return float(weights_of_positives.numel())
    if mode == "weight_sum":
        return float(weights_of_positives.sum())
    raise ValueError(f"normalize_by={mode!r} must be 'num_pos' (authors' code) or 'weight_sum'.")
