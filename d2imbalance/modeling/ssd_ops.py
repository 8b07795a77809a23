"""SSD's tensor rules in pure torch (no detectron2): default-box sizes and shapes, matching, hard
negative mining, the multibox loss and per-class candidate selection.

Everything here follows the SSD paper (Liu et al., ECCV 2016) and its public recipes: the Caffe code
(weiliu89/caffe, branch ssd: examples/ssd/ssd_pascal.py, ssd_coco.py, MultiBoxLoss) and the
mmdetection v1 SSD that the scale-balanced authors' code builds on. Where those differ the docstrings
say which one is followed.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "ssd_prior_sizes",
    "ssd_cell_anchors",
    "match_priors",
    "hard_negative_mask",
    "multibox_loss",
    "select_per_class",
]


def ssd_prior_sizes(
    input_size: int, num_maps: int, min_ratio: int, max_ratio: int, first_ratios: Tuple[int, int]
) -> Tuple[List[float], List[float]]:
    """The per-map min / max default-box sizes of the Caffe SSD recipe, in pixels.

    Map 0 (conv4_3) gets ``first_ratios`` percent of the input; maps 1.. get ratios from ``min_ratio``
    to ``max_ratio`` percent in steps of floor((max_ratio - min_ratio) / (num_maps - 2)), each map's
    max size being the next map's min size (ssd_pascal.py: ``min_sizes.append(min_dim * ratio / 100.)``).
    Sizes are kept as the recipe's floats (mmdetection truncates them to int).

    Recipes: SSD300 VOC (300, 6, 20, 90, (10, 20)) -> min 30, 60, 111, 162, 213, 264;
    SSD300 COCO (300, 6, 15, 90, (7, 15)); SSD512 VOC (512, 7, 15, 90, (7, 15));
    SSD512 COCO (512, 7, 10, 90, (4, 10)).
    """
    if num_maps < 3:
        raise ValueError(f"num_maps={num_maps}: the SSD size recipe needs at least 3 feature maps.")
    step = (max_ratio - min_ratio) // (num_maps - 2)
    ratios = range(min_ratio, max_ratio + 1, step)
    min_sizes = [input_size * first_ratios[0] / 100.0] + [input_size * r / 100.0 for r in ratios]
    max_sizes = [input_size * first_ratios[1] / 100.0] + [input_size * (r + step) / 100.0 for r in ratios]
    return min_sizes, max_sizes


def ssd_cell_anchors(min_size: float, max_size: Optional[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """The default boxes of one feature-map cell, centred at (0, 0), XYXY, in Caffe's order.

    A square of side s_k = ``min_size``, a square of side sqrt(s_k s_k+1) (s_k+1 = ``max_size``; none
    when ``max_size`` is None, as RefineDet's recipe, which gives no max sizes), then for each ratio a in
    ``aspect_ratios`` a box of width s_k sqrt(a) and height s_k / sqrt(a) and its transpose (Caffe's
    ``flip: true``). {2} gives 4 boxes, {2, 3} gives 6 (3 and 5 without a max size).

    Returns:
        Tensor (1 + (max_size is not None) + 2 * len(aspect_ratios), 4).
    """
    if min_size <= 0 or (max_size is not None and max_size < min_size):
        raise ValueError(f"Default-box sizes need 0 < min_size <= max_size, got {min_size}, {max_size}.")
    if any(a <= 0 for a in aspect_ratios):
        raise ValueError(f"aspect_ratios={list(aspect_ratios)} must be positive, e.g. [2, 3].")
    wh = [(min_size, min_size)]
    if max_size is not None:
        extra = math.sqrt(min_size * max_size)
        wh.append((extra, extra))
    for a in aspect_ratios:
        wh += [(min_size * math.sqrt(a), min_size / math.sqrt(a)), (min_size / math.sqrt(a), min_size * math.sqrt(a))]
    wh = torch.tensor(wh, dtype=torch.float32)
    return torch.cat([-wh / 2, wh / 2], dim=1)


def match_priors(iou: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """SSD's matching: each ground truth's best prior is positive and owned by that ground truth, then
    every other prior goes to its highest-IoU ground truth if that IoU is >= ``threshold``.

    Vectorised. Where several ground truths share a best prior, the last of them owns it, as the
    sequential loops of mmdetection's MaxIoUAssigner (``min_pos_iou=0``) and ssd.pytorch's ``match`` leave
    it; the others keep only their >= ``threshold`` matches (Caffe's bipartite step would give them their
    next-best prior instead). detectron2's ``Matcher`` differs: a low-quality match keeps its argmax owner.

    Args:
        iou: (G, R) IoU of G ground truths with R priors.

    Returns:
        (R,) int64: the matched ground-truth index of each prior, -1 for background.
    """
    num_gt, num_priors = iou.shape
    if num_gt == 0:
        return iou.new_full((num_priors,), -1, dtype=torch.int64)
    best_iou, matched = iou.max(dim=0)
    matched[best_iou < threshold] = -1
    best_prior = iou.argmax(dim=1)
    forced = torch.full_like(matched, -1)
    forced.scatter_reduce_(0, best_prior, torch.arange(num_gt, device=iou.device), reduce="amax")
    return torch.where(forced >= 0, forced, matched)


@torch.no_grad()
def hard_negative_mask(
    neg_losses: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_pos_ratio: float = 3.0,
    eligible: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per image, the ``floor(neg_pos_ratio * num_pos)`` eligible negatives with the largest loss (all of
    them if fewer); an image without positives mines none (Caffe's MineHardExamples, mmdetection,
    ssd.pytorch).

    One ``topk`` over the batch, k = the largest per-image quota: the batch's priors are partially
    sorted once.

    Args:
        neg_losses: (N, R) the loss each prior would have as background (SSD: softmax CE).
        pos_mask: (N, R) bool, positive priors.
        eligible: (N, R) bool, the priors that may be mined; default every non-positive prior.
            RefineDet's ODM excludes the anchors its negative anchor filtering removed.

    Returns:
        (N, R) bool, the mined negatives.
    """
    if eligible is None:
        eligible = ~pos_mask
    num_pos = pos_mask.sum(dim=1)
    num_neg = torch.minimum((num_pos * neg_pos_ratio).floor().long(), eligible.sum(dim=1))
    mask = torch.zeros_like(pos_mask)
    k = int(num_neg.max())
    if k == 0:
        return mask
    candidates = neg_losses.masked_fill(~eligible, float("-inf"))
    order = candidates.topk(k, dim=1).indices
    chosen = torch.arange(k, device=order.device)[None, :] < num_neg[:, None]
    return mask.scatter_(1, order, chosen)


def multibox_loss(
    cls_logits: torch.Tensor,
    gt_labels: torch.Tensor,
    pred_deltas: torch.Tensor,
    gt_deltas: torch.Tensor,
    *,
    neg_pos_ratio: float = 3.0,
    smooth_l1_beta: float = 1.0,
    cls_weights: Optional[torch.Tensor] = None,
    box_weights: Optional[torch.Tensor] = None,
    ignore: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, int, int]:
    """SSD's loss: softmax cross-entropy on positives and hard-mined negatives, smooth-L1 on the
    positives' box deltas, both summed over the batch and divided by its number of positives
    (1 if there are none, as mmdetection; the losses are then exactly 0).

    Args:
        cls_logits: (N, R, K + 1), the last class being background.
        gt_labels: (N, R) int64 in [0, K]; K marks background.
        pred_deltas, gt_deltas: (N, R, 4); only positives' entries are read (others may be inf).
        neg_pos_ratio: mined negatives per positive, per image.
        smooth_l1_beta: Caffe's and mmdetection's SSD use 1.
        cls_weights: optional (N, R) factors on each prior's cross-entropy, applied after mining (which
            ranks the unweighted loss); None = 1. SSD-SCB weights positives this way.
        box_weights: optional (N, R) factors on each positive's box loss; None = 1.
        ignore: optional (N, R) bool, priors that take no loss at all: neither positive (nor counted
            in the normaliser and the mining quota) nor mined as negatives (RefineDet's negative
            anchor filtering in its ODM).

    Returns:
        loss_cls, loss_box (scalars), number of positives, number of mined negatives.
    """
    background = cls_logits.shape[-1] - 1
    pos_mask = gt_labels != background
    eligible = ~pos_mask
    if ignore is not None:
        pos_mask = pos_mask & ~ignore
        eligible = eligible & ~ignore
    ce = F.cross_entropy(cls_logits.flatten(0, 1), gt_labels.flatten(), reduction="none").view_as(gt_labels)
    neg_mask = hard_negative_mask(ce, pos_mask, neg_pos_ratio, eligible)
    if cls_weights is not None:
        ce = ce * cls_weights
    num_pos = int(pos_mask.sum())
    normalizer = max(num_pos, 1)
    loss_cls = ce[pos_mask | neg_mask].sum() / normalizer
    box = F.smooth_l1_loss(pred_deltas[pos_mask], gt_deltas[pos_mask], beta=smooth_l1_beta, reduction="none").sum(-1)
    if box_weights is not None:
        box = box * box_weights[pos_mask]
    loss_box = box.sum() / normalizer
    return loss_cls, loss_box, num_pos, int(neg_mask.sum())


def select_per_class(
    scores: torch.Tensor, score_thresh: float = 0.01, topk_per_class: int = 400
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Caffe's DetectionOutput candidate step: per class, the ``topk_per_class`` highest-scoring priors
    whose score is > ``score_thresh`` (NMS and the per-image top-k follow).

    Args:
        scores: (R, K) class probabilities (background excluded).

    Returns:
        prior indices, class indices, scores; one entry per candidate.
    """
    k = min(topk_per_class, scores.shape[0])
    top_scores, top_priors = scores.topk(k, dim=0)
    keep = top_scores > score_thresh
    classes = keep.nonzero()[:, 1]
    return top_priors[keep], classes, top_scores[keep]
