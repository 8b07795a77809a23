"""Scale-balanced weights (paper §3.2, Eqs. 1-5; Table 1): pure torch, no detectron2 import.

An object G_i matched by M_i anchors gets the weight W_i; its positive anchors' losses are multiplied by
W_i (Eq. 2), negatives keep weight 1 and ignored anchors contribute nothing. Everything here works on
the matcher's output that the detector already computed (per-anchor matched index + label), so no IoU
matrix is built a second time and the memory used is O(#anchors + #objects).
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from d2imbalance.evaluation.size_classes import SIZE_NAMES as SIZE_CLASSES
from d2imbalance.analysis.hyperparameters import Hyperparameter
from d2imbalance.evaluation.size_classes import size_index as size_class  # COCO's classes, upper bounds inclusive

__all__ = [
    "HYPERPARAMETERS",
    "WEIGHTING_FORMS",
    "SIZE_CLASSES",
    "weight_from_count",
    "match_counts",
    "anchor_weights",
    "scale_balanced_weights",
    "batch_scale_balanced_weights",
    "size_class",
    "size_class_stats",
    "ScaleBalancedWeights",
]

#: What the scale-balanced loss introduces (the review's "Parameters"; §3.2: "There are two
#: hyperparameters in the Eq. (3)"). Config keys of every SCB detector (RetinaNetSCB, SSDSCB,
#: RefineDetSCB, ScaleBalancedRPN / ScaleBalancedROIHeads relative to their node); each detector adds
#: them to the imbalance hyper-parameters of the detector it keeps (focal loss, mining, sampling).
#: ``weighting_form`` is Table 1's choice among forms, not a tuned value.
HYPERPARAMETERS = (
    Hyperparameter("scb_alpha", 1.0, "α of W_i = β(log M_i + α)/M_i (Eq. 3; 1 in every experiment, Table 2)"),
    Hyperparameter("scb_beta", 3.0, "β of W_i = β(log M_i + α)/M_i (Eq. 3; 3 in every experiment, Table 2)"),
)


def _scale_balanced(m: Tensor, alpha: float, beta: float) -> Tensor:
    return beta * (torch.log(m) + alpha) / m  # Eq. 3


# Table 1's forms are "basic forms": the paper omits their constants. Its last row, (log M + 1)/M at
# 78.2 mAP, is Table 2's SSD300 with α = 1, β = 3, so the rows carry β (which keeps the positives' loss
# from shrinking next to the negatives', §3.2); "const" is the vanilla loss (row 1 = Table 2's 77.2).
# "log_over_m_unscaled" keeps the β-free reading, as a named extra outside the table.
WEIGHTING_FORMS: Dict[str, Callable[[Tensor, float, float], Tensor]] = {
    "scale_balanced": _scale_balanced,  # β(log M + α)/M, Eq. 3 (the method; α=1, β=3)
    "const": lambda m, a, b: torch.ones_like(m),  # 1: the vanilla loss (Table 1, row 1)
    "inv_log": lambda m, a, b: b / (torch.log(m) + 1.0),  # β/(log M + 1) (Table 1, row 2)
    "inv_sqrt": lambda m, a, b: b * torch.rsqrt(m),  # β/√M (Table 1, row 3)
    "inv": lambda m, a, b: b / m,  # β/M (Table 1, row 4)
    "log_over_m": lambda m, a, b: b * (torch.log(m) + 1.0) / m,  # β(log M + 1)/M (Table 1, row 5)
    "log_over_m_unscaled": lambda m, a, b: (torch.log(m) + 1.0) / m,  # (log M + 1)/M without β (extra)
}


def weight_from_count(
    counts: Tensor, *, form: str = "scale_balanced", alpha: float = 1.0, beta: float = 3.0
) -> Tensor:
    """Per-object weight W from its match count M (natural log).

    Args:
        counts: (G,) integer or float tensor of match counts M_i >= 0.
        form: a key of :data:`WEIGHTING_FORMS`.
        alpha, beta: the constants of Eq. 3 (paper: α=1, β=3 in every experiment).

    Returns:
        (G,) float tensor. Objects with M=0 have no positive anchor, so their weight is never used;
        it is set to 0 (not inf/NaN) so that downstream reductions stay finite.
    """
    if form not in WEIGHTING_FORMS:
        raise ValueError(
            f"Unknown weighting form {form!r}; choose one of {sorted(WEIGHTING_FORMS)} "
            "('scale_balanced' is the paper's Eq. 3, the others are Table 1's ablation)."
        )
    dtype = counts.dtype if counts.is_floating_point() else torch.float32
    m = counts.to(dtype)
    matched = m > 0
    w = WEIGHTING_FORMS[form](m.clamp(min=1.0), alpha, beta)
    return torch.where(matched, w, torch.zeros_like(w))


def match_counts(matched_idxs: Tensor, labels: Tensor, num_gt: int) -> Tensor:
    """M_i: the number of positive anchors assigned to each ground truth of one image.

    Args:
        matched_idxs: (R,) int64, the matcher's ground-truth index per anchor, R = sum(Hi*Wi*A) over
            all levels (detectron2 ``Matcher`` output ``matches``).
        labels: (R,) int, the matcher's label per anchor: 1 positive, 0 negative, -1 ignored. Forced
            low-quality matches are label 1 and count toward ``matched_idxs`` of that anchor.
        num_gt: G, the number of ground truths of the image.

    Returns:
        (G,) int64 counts (scatter-add, no host synchronisation, no (G, R) tensor).
    """
    assert matched_idxs.shape == labels.shape and matched_idxs.dim() == 1, (
        f"matched_idxs {tuple(matched_idxs.shape)} and labels {tuple(labels.shape)} must both be (R,)"
    )
    counts = matched_idxs.new_zeros(num_gt)  # int64, as the matcher's indices
    if num_gt == 0:
        return counts
    return counts.scatter_add_(0, matched_idxs, (labels == 1).to(torch.int64))


def anchor_weights(matched_idxs: Tensor, labels: Tensor, gt_weights: Tensor) -> Tensor:
    """Per-anchor weights: W of its object on positives, 1 on negatives, 0 on ignored anchors.

    Args:
        matched_idxs, labels: (R,) as in :func:`match_counts`.
        gt_weights: (G,) float, W_i per ground truth.

    Returns:
        (R,) tensor of ``gt_weights.dtype``.
    """
    negative = (labels == 0).to(gt_weights.dtype)
    if gt_weights.numel() == 0:  # no ground truth: matcher labels are all negative / ignored
        return negative
    return torch.where(labels == 1, gt_weights[matched_idxs], negative)


class ScaleBalancedWeights(NamedTuple):
    """Result of :func:`scale_balanced_weights` for one image."""

    counts: Tensor  # (G,) int64, M_i
    gt_weights: Tensor  # (G,) float, W_i (0 where M_i = 0)
    anchor_weights: Tensor  # (R,) float


def scale_balanced_weights(
    matched_idxs: Tensor,
    labels: Tensor,
    num_gt: int,
    *,
    form: str = "scale_balanced",
    alpha: float = 1.0,
    beta: float = 3.0,
    count_labels: Optional[Tensor] = None,
) -> ScaleBalancedWeights:
    """M_i, W_i and per-anchor weights for one image (Eqs. 2-3).

    Args:
        matched_idxs: (R,) int64 matched ground-truth index per anchor.
        labels: (R,) int in {-1, 0, 1}: the labels the loss uses (e.g. after RPN subsampling).
        num_gt: G.
        form, alpha, beta: see :func:`weight_from_count`.
        count_labels: (R,) labels to count M from, when they differ from ``labels`` (e.g. the
            matcher's labels before RPN subsampling). Defaults to ``labels``.
    """
    counts = match_counts(matched_idxs, labels if count_labels is None else count_labels, num_gt)
    gt_w = weight_from_count(counts, form=form, alpha=alpha, beta=beta)
    return ScaleBalancedWeights(counts, gt_w, anchor_weights(matched_idxs, labels, gt_w))


def size_class_stats(counts: Tensor, gt_weights: Tensor, areas: Tensor) -> Dict[str, float]:
    """EventStorage-ready means by COCO size class (one host synchronisation).

    Args:
        counts: (G,) M_i over all images of the batch. gt_weights: (G,) W_i. areas: (G,) box areas.

    Returns:
        {"scb/mean_M_small": ..., "scb/mean_weight_small": ..., "scb/frac_unmatched_small": ...} for
        each size class that has ground truths in the batch; mean_weight is over matched objects
        (M >= 1), the others over all objects of the class.
    """
    cls = size_class(areas)
    matched = (counts > 0).to(torch.float32)
    per_class = [torch.bincount(cls, w, len(SIZE_CLASSES)) for w in (
        torch.ones_like(matched), counts.to(torch.float32), matched, gt_weights.to(torch.float32) * matched)]
    num, sum_m, num_matched, sum_w = torch.stack(per_class).tolist()
    out = {}
    for i, name in enumerate(SIZE_CLASSES):
        if num[i] > 0:
            out[f"scb/mean_M_{name}"] = sum_m[i] / num[i]
            out[f"scb/frac_unmatched_{name}"] = 1.0 - num_matched[i] / num[i]
        if num_matched[i] > 0:
            out[f"scb/mean_weight_{name}"] = sum_w[i] / num_matched[i]
    return out


def batch_scale_balanced_weights(
    matched_idxs: Sequence[Tensor],
    labels: Sequence[Tensor],
    gt_areas: Sequence[Tensor],
    *,
    form: str = "scale_balanced",
    alpha: float = 1.0,
    beta: float = 3.0,
    count_labels: Optional[Sequence[Tensor]] = None,
) -> Tuple[List[Tensor], Dict[str, float]]:
    """:func:`scale_balanced_weights` for each image of a batch, plus size-class statistics.

    Args:
        matched_idxs: N tensors (R,) int64, the matcher's ground-truth index per anchor.
        labels: N tensors (R,) in {-1, 0, 1}, the labels the loss uses.
        gt_areas: N tensors (G_n,), ground-truth box areas (for the size-class statistics).
        count_labels: N tensors (R,) to count M from, if not ``labels``.

    Returns:
        N per-anchor weight tensors (R,), and :func:`size_class_stats` of the batch.
    """
    per_image = [
        scale_balanced_weights(
            idx, lab, len(area), form=form, alpha=alpha, beta=beta,
            count_labels=None if count_labels is None else count_labels[i],
        )
        for i, (idx, lab, area) in enumerate(zip(matched_idxs, labels, gt_areas))
    ]
    stats = size_class_stats(
        torch.cat([r.counts for r in per_image]),
        torch.cat([r.gt_weights for r in per_image]),
        torch.cat([a.to(per_image[0].gt_weights.device) for a in gt_areas]),
    )
    return [r.anchor_weights for r in per_image], stats
