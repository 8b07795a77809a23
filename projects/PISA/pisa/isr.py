"""Importance-based Sample Reweighting (ISR) of PISA (Cao, Chen, Loy, Lin, "Prime Sample Attention in
Object Detection", CVPR 2020) as pure tensor functions; nothing here imports detectron2.

PISA ranks the sampled RoIs of a mini-batch by how much they matter for mAP, with a Hierarchical Local
Rank (HLR), and reweights their classification loss by that rank:

- **IoU-HLR of the positives** (ISR-P). The positives are grouped by the ground truth they are matched
  to and ranked inside each group by their IoU with it, highest first (the local rank). The positives
  of one class are then ordered by local rank first and IoU second: the best positive of every object
  comes before the second best of any object. Optionally (``nms_threshold``), a greedy NMS among each
  object's positives, by IoU with the object, puts the positives it keeps before the ones it
  suppresses inside the object's local rank.
- **Score-HLR of the negatives** (ISR-N). A negative's score is its highest foreground probability.
  The negatives of an image are grouped into NMS clusters (a kept box and the boxes it suppresses),
  ranked inside each cluster by score, then ordered by local rank first and score second.
- **Weights.** The rank r (0 = most important) becomes u = (n_max - r) / n_max, n_max the size of the
  largest class (the positives of the most frequent class; for the negatives, all of them), so the
  same rank in different classes gets the same u. The weight is w = ((1 - β) u + β)^γ: γ says how much
  the top is preferred, β is the smallest weight. The weights are then rescaled so that the weighted
  loss of the set equals its unweighted loss (Σ w' L = Σ L), positives and negatives separately: ISR
  moves the loss between samples and leaves its total alone.

:func:`score_hlr_sample` is the authors' code's other reading of ISR-N: the negatives are not drawn at
random and reweighted, but drawn by Score-HLR (mmdetection's ``ScoreHLRSampler``).

Every function works on flat (R,) tensors without a Python loop over RoIs, objects or clusters: the
hierarchical ranks are successive stable sorts, NMS is torchvision's (batched over groups), and each
box's NMS cluster is read from one (R, kept) IoU matrix.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from d2imbalance.analysis.hyperparameters import ROI_HEADS_SAMPLING, Hyperparameter

__all__ = [
    "HYPERPARAMETERS",
    "ISR_HYPERPARAMETERS",
    "POSITIVE_IOUS",
    "aligned_iou",
    "check_isr_options",
    "group_extremes",
    "hierarchical_local_rank",
    "importance_weights",
    "isr_negative_weights",
    "isr_positive_weights",
    "nms_clusters",
    "nms_survivors",
    "rank_importance",
    "renormalize",
    "score_hlr_sample",
    "weight_scalars",
]

#: ``"proposal"``: the IoU of the RoI itself with its ground truth, as the matcher computes it;
#: ``"regressed"``: the IoU of the box the head regresses from it (the authors' ``isr_p``).
POSITIVE_IOUS = ("proposal", "regressed")

#: The four numbers of ISR (γ and β for the positives and for the negatives). The names are config keys
#: under the ROI heads' node: the weights are computed by their box predictor.
ISR_HYPERPARAMETERS: Tuple[Hyperparameter, ...] = (
    Hyperparameter("box_predictor.positive_gamma", 2.0, "γ of ISR-P: weight ((1-β)u + β)^γ of a positive of rank u"),
    Hyperparameter("box_predictor.positive_beta", 0.0, "β of ISR-P: the smallest weight of a positive"),
    Hyperparameter("box_predictor.negative_gamma", 0.5, "γ of ISR-N: weight ((1-β)u + β)^γ of a negative of rank u"),
    Hyperparameter("box_predictor.negative_beta", 0.0, "β of ISR-N: the smallest weight of a negative"),
)
#: ISR keeps Faster R-CNN's ROI sampling (512 per image, 25 % foreground) and adds its four: 6 for the
#: ROI heads. The review (papers/001 Table 1) counts 4 for ISR: the four above.
HYPERPARAMETERS: Tuple[Hyperparameter, ...] = ROI_HEADS_SAMPLING + ISR_HYPERPARAMETERS


def check_isr_options(
    *,
    positive_gamma: float,
    positive_beta: float,
    negative_gamma: float,
    negative_beta: float,
    positive_iou: str = "proposal",
    positive_nms_threshold: Optional[float] = None,
    negative_nms_threshold: float = 0.5,
) -> None:
    """Raise a ValueError naming the bad value and the fix (shared by the pure functions and the heads)."""
    for name, value in (("positive_gamma", positive_gamma), ("negative_gamma", negative_gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name}={value!r} must be a number >= 0 (0 gives every sample weight 1, ISR off).")
    for name, value in (("positive_beta", positive_beta), ("negative_beta", negative_beta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value!r} must be in [0, 1]: the smallest weight before rescaling (1: ISR off).")
    if positive_iou not in POSITIVE_IOUS:
        raise ValueError(
            f"positive_iou={positive_iou!r} is not one of {POSITIVE_IOUS}: 'proposal' (the RoI's IoU from the "
            "matching) or 'regressed' (the regressed box's IoU, the authors' code)."
        )
    for name, value in (("positive_nms_threshold", positive_nms_threshold), ("negative_nms_threshold", negative_nms_threshold)):
        if name == "positive_nms_threshold" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            none = " or None (no NMS among the positives)" if name == "positive_nms_threshold" else ""
            raise ValueError(f"{name}={value!r} must be an IoU in (0, 1]{none}.")


def _lexsort(*keys: Tensor) -> Tensor:
    """Indices that sort by ``keys[0]``, ties by ``keys[1]``, ...; all ascending, stable."""
    order = torch.arange(keys[0].numel(), device=keys[0].device)
    for key in reversed(keys):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def _rank_within(sorted_groups: Tensor) -> Tensor:
    """Position of each entry of an ascending sequence inside its run of equal values."""
    start = torch.searchsorted(sorted_groups.contiguous(), sorted_groups.contiguous())
    return torch.arange(sorted_groups.numel(), device=sorted_groups.device) - start


def hierarchical_local_rank(
    values: Tensor, groups: Tensor, classes: Optional[Tensor] = None, first: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor]:
    """The two-step rank of PISA's HLR.

    1. Local rank: inside each group, by ``first`` (True before False) and then ``values``, highest first.
    2. Hierarchical rank: inside each class, by local rank, and then ``values``, highest first.
    Ties keep the input order.

    Args:
        values: (R,) float, the IoU (positives) or score (negatives); higher is more important.
        groups: (R,) int64, the object (positives) or NMS cluster (negatives) of each sample.
        classes: (R,) int64, the ranking is done per class; None: one class.
        first: (R,) bool, samples ranked first inside their group (the NMS survivors); None: all equal.

    Returns:
        hlr: (R,) int64, 0 for the most important sample of its class, up to (class size - 1).
        local: (R,) int64, the local rank inside the group, 0 for the group's top.
    """
    assert values.shape == groups.shape and values.dim() == 1, (tuple(values.shape), tuple(groups.shape))
    groups = groups.long()
    classes = torch.zeros_like(groups) if classes is None else classes.long()
    first = torch.ones_like(groups, dtype=torch.bool) if first is None else first.bool()
    neg_values = -values.float()
    local = torch.empty_like(groups)
    order = _lexsort(groups, (~first).long(), neg_values)
    local[order] = _rank_within(groups[order])
    hlr = torch.empty_like(groups)
    order = _lexsort(classes, local, neg_values)
    hlr[order] = _rank_within(classes[order])
    return hlr, local


def rank_importance(hlr: Tensor, classes: Optional[Tensor] = None) -> Tensor:
    """u = (n_max - r) / n_max: 1 for rank 0 of every class, n_max the largest class's size.

    Args:
        hlr: (R,) int64 ranks from :func:`hierarchical_local_rank`.
        classes: (R,) int64 or None (one class).

    Returns:
        (R,) float in (0, 1].
    """
    if hlr.numel() == 0:
        return hlr.float()
    if classes is None:
        n_max = hlr.numel()
    else:
        n_max = int(torch.unique(classes, return_counts=True)[1].max())
    return (n_max - hlr.float()) / n_max


def importance_weights(u: Tensor, gamma: float, beta: float) -> Tensor:
    """w = ((1 - β) u + β)^γ."""
    return ((1.0 - beta) * u + beta).pow(gamma)


def renormalize(weights: Tensor, losses: Tensor) -> Tuple[Tensor, float]:
    """Rescale ``weights`` so that Σ w L = Σ L (the set's loss keeps its value).

    Args:
        weights, losses: (R,); ``losses`` are the per-sample losses the weights multiply (detached).

    Returns:
        The rescaled weights and the factor Σ L / Σ w L (1 when Σ w L is 0, e.g. an empty set).
    """
    weighted = float((weights * losses).sum())
    if not weighted > 0:
        return weights, 1.0
    ratio = float(losses.sum()) / weighted
    return weights * ratio, ratio


def aligned_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[i] with b[i]; (R, 4) boxes (x0, y0, x1, y1) -> (R,). 0 where both are empty."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def _processing_order(scores: Tensor) -> Tensor:
    """Position of each box in a greedy NMS that visits them by score, highest first (ties: input order)."""
    order = torch.sort(-scores.float(), stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel(), device=order.device)
    return position


def nms_survivors(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """(R,) bool: the boxes a greedy NMS keeps, run separately in each group.

    Args:
        boxes: (R, 4) x0, y0, x1, y1. scores: (R,), visited highest first (ties: input order).
        groups: (R,) int64; boxes of different groups never suppress each other.
        threshold: a box is suppressed by a kept one whose IoU with it exceeds this.
    """
    keep = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    if boxes.shape[0]:
        position = _processing_order(scores)
        keep[batched_nms(boxes.float(), -position.float(), groups, threshold)] = True
    return keep


def nms_clusters(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """(R,) int64: the index of the box whose cluster each box is in, under a greedy NMS per group.

    A kept box heads its own cluster; a suppressed box belongs to the kept box that suppressed it, the
    first kept box (by score) of its group that precedes it and overlaps it above ``threshold``
    (mmcv's ``nms_match`` groups the same way).
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = nms_survivors(boxes, scores, groups, threshold)
    kept = keep.nonzero().squeeze(1)
    position = _processing_order(scores)
    overlap = box_iou(boxes.float(), boxes[kept].float()) > threshold  # (R, K)
    before = position[kept][None, :] < position[:, None]
    same = groups[:, None] == groups[kept][None, :]
    candidates = torch.where(overlap & before & same, position[kept][None, :], torch.full_like(overlap, n, dtype=torch.long))
    first = candidates.min(dim=1)
    assert bool((first.values < n)[~keep].all()), "a suppressed box without a kept box that suppressed it"
    cluster = kept[first.indices]
    return torch.where(keep, torch.arange(n, device=boxes.device), cluster)


def isr_positive_weights(
    ious: Tensor,
    objects: Tensor,
    classes: Tensor,
    losses: Tensor,
    *,
    gamma: float,
    beta: float,
    boxes: Optional[Tensor] = None,
    nms_threshold: Optional[float] = None,
) -> Dict[str, Tensor]:
    """ISR-P: IoU-HLR, importance, weights, rescaled so the positives' loss keeps its sum.

    Args:
        ious: (P,) each positive's IoU with its ground truth.
        objects: (P,) int64, its ground truth, unique over the batch.
        classes: (P,) int64, its class; the HLR is per class.
        losses: (P,) its (detached) classification loss.
        gamma, beta: γ and β.
        boxes: (P, 4), needed with ``nms_threshold``: the boxes the NMS compares.
        nms_threshold: None, or an IoU: the NMS survivors of each object come first in its local rank.

    Returns:
        dict with ``weights`` (P,), ``hlr`` (P,), ``local`` (P,), ``ratio`` (0-dim, Σ L / Σ w L).
    """
    first = None
    if nms_threshold is not None:
        assert boxes is not None and boxes.shape == (ious.numel(), 4), "NMS among the positives needs their boxes"
        first = nms_survivors(boxes, ious, objects, nms_threshold)
    hlr, local = hierarchical_local_rank(ious, objects, classes, first)
    weights = importance_weights(rank_importance(hlr, classes), gamma, beta)
    weights, ratio = renormalize(weights, losses)
    return dict(weights=weights, hlr=hlr, local=local, ratio=torch.tensor(ratio))


def isr_negative_weights(
    scores: Tensor,
    boxes: Tensor,
    images: Tensor,
    losses: Tensor,
    *,
    gamma: float,
    beta: float,
    nms_threshold: float = 0.5,
) -> Dict[str, Tensor]:
    """ISR-N as a reweighting: Score-HLR over NMS clusters, one class, rescaled to keep the loss sum.

    Args:
        scores: (N,) each negative's highest foreground probability.
        boxes: (N, 4) the boxes whose overlap makes the clusters (the regressed boxes of the
            highest-scoring class, as the authors' code clusters them).
        images: (N,) int64, the image of each negative; clusters never span images.
        losses: (N,) detached classification losses.
        gamma, beta, nms_threshold: γ, β and the IoU above which NMS suppresses.

    Returns:
        dict with ``weights``, ``hlr``, ``local``, ``cluster`` (N,) and ``ratio``.
    """
    cluster = nms_clusters(boxes, scores, images, nms_threshold)
    hlr, local = hierarchical_local_rank(scores, cluster)
    weights = importance_weights(rank_importance(hlr), gamma, beta)
    weights, ratio = renormalize(weights, losses)
    return dict(weights=weights, hlr=hlr, local=local, cluster=cluster, ratio=torch.tensor(ratio))


def score_hlr_sample(
    scores: Tensor,
    boxes: Tensor,
    losses: Tensor,
    num_samples: int,
    *,
    gamma: float,
    beta: float,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """ISR-N as the authors' code runs it (mmdetection's ``ScoreHLRSampler``), for one image.

    1. The candidates with score > ``score_threshold`` are valid; the rest are invalid.
    2. The valid ones are ranked by Score-HLR (NMS clusters at ``nms_threshold``), and the top
       min(V, N) of them are drawn, N = min(num_samples, R); the rest of the N comes uniformly at
       random from the invalid ones.
    3. The drawn ones get u = (m - r) / m, r their rank, m = max(N, V); the randomly drawn ones get the
       smallest u of the ranked ones; w = ((1 - β) u + β)^γ, rescaled so that the drawn negatives'
       loss keeps its sum. Without a valid candidate the draw is uniform and every weight 1.

    Args:
        scores: (R,) the candidates' highest foreground probability. boxes: (R, 4) their boxes for
            the clusters. losses: (R,) their classification loss as negatives.
        num_samples: how many to draw.
        gamma, beta, score_threshold, nms_threshold: as above.
        generator: source of the random draw.

    Returns:
        (N,) int64 indices (the ranked ones in rank order, then the random ones) and (N,) weights.
    """
    r = scores.numel()
    n = min(r, int(num_samples))
    valid = scores > score_threshold
    num_valid = int(valid.sum())
    if num_valid == 0:
        idx = torch.randperm(r, generator=generator, device=scores.device)[:n]
        return idx, torch.ones(n, dtype=scores.dtype, device=scores.device)
    valid_idx = valid.nonzero().squeeze(1)
    zeros = torch.zeros_like(valid_idx)
    cluster = nms_clusters(boxes[valid_idx], scores[valid_idx], zeros, nms_threshold)
    hlr, _ = hierarchical_local_rank(scores[valid_idx], cluster)
    num_hlr = min(num_valid, n)
    ranked = valid_idx[torch.argsort(hlr)[:num_hlr]]
    invalid_idx = (~valid).nonzero().squeeze(1)
    extra = invalid_idx[torch.randperm(invalid_idx.numel(), generator=generator, device=scores.device)[: n - num_hlr]]
    idx = torch.cat([ranked, extra])
    m = max(n, num_valid)
    u = (m - torch.arange(num_hlr, device=scores.device, dtype=scores.dtype)) / m
    u = torch.cat([u, u.min().expand(n - num_hlr)])
    weights, _ = renormalize(importance_weights(u, gamma, beta), losses[idx])
    return idx, weights


def group_extremes(local: Tensor, groups: Tensor) -> Tuple[Tensor, Tensor]:
    """(R,) bool masks: the top of each group (local rank 0) and the bottom of each group of 2 or more
    (its largest local rank)."""
    top = local == 0
    if local.numel() == 0:
        return top, top
    _, inverse = torch.unique(groups, return_inverse=True)
    last = torch.zeros(int(inverse.max()) + 1, dtype=local.dtype, device=local.device)
    last = last.scatter_reduce(0, inverse, local, reduce="amax")
    bottom = (local == last[inverse]) & (local > 0)
    return top, bottom


def weight_scalars(prefix: str, weights: Tensor, local: Tensor, groups: Tensor) -> Dict[str, float]:
    """Training signals of one set of weights: mean and spread, and the mean weight of the top and of
    the bottom of the groups (objects or clusters). Keys of empty sets are left out, not NaN."""
    if weights.numel() == 0:
        return {}
    top, bottom = group_extremes(local, groups)
    scalars = {
        f"{prefix}_weight_mean": float(weights.mean()),
        f"{prefix}_weight_std": float(weights.std(unbiased=False)),
        f"{prefix}_weight_top": float(weights[top].mean()),
    }
    if bool(bottom.any()):
        scalars[f"{prefix}_weight_bottom"] = float(weights[bottom].mean())
    return scalars
