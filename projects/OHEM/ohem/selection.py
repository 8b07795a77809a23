"""Online hard example mining (Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with
Online Hard Example Mining", CVPR 2016, §4) as pure tensor functions; nothing here imports detectron2.

The ROI heads of a region-based detector see thousands of RoIs per image and train on a mini-batch of them.
OHEM runs the RoI network forward on every RoI, reads each one's loss, and keeps for the backward pass the
B/N RoIs per image that the network currently does worst on (§4.1). Co-located RoIs overlap the same
cells of the feature map and have correlated losses, so before the selection a standard NMS runs over the
RoIs with their loss as the score: the hardest RoI is kept and every RoI overlapping it by IoU > 0.7 is
removed, then the next hardest, and so on. The selection needs no foreground-background ratio (§4.1).

What we do where the text is silent, and the switches for the authors' code and mmdetection (the README
has the table):

- **Ties** (equal losses, an easy background image gives many) are broken by the RoI's index: the ranking
  is a stable sort, and the NMS scores the RoIs by their rank, so the result never depends on the order
  in which a sort or an NMS kernel visits equal values.
- **NMS groups**: the paper's NMS runs over all the RoIs of an image (``groups=None``). The authors' code
  runs it per ground-truth label, so a background RoI never suppresses a foreground one
  (``groups=labels``).
- **Fewer RoIs than the budget** (after the NMS): all of them are kept, as in the authors' code.
- **A positive cap** (mmdetection's ``OHEMSampler``, not in the paper): at most
  int(B/N * positive_fraction) of the kept RoIs are positives, the hardest ones, and the hardest negatives
  fill the rest.

The NMS is torchvision's (the same one detectron2 calls); there is no Python loop over RoIs.
"""
from typing import Dict, Optional

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "HYPERPARAMETERS",
    "SELECTION_LOSSES",
    "check_ohem_options",
    "hard_example_ranking",
    "ohem_scalars",
    "select_hard_examples",
    "selection_statistics",
    "take_hardest",
]

#: The per-RoI loss that ranks the RoIs: ``"cls_box"``, the Fast R-CNN multi-task loss, classification
#: plus box regression (the paper, the authors' code); ``"cls"``, classification only (mmdetection).
SELECTION_LOSSES = ("cls_box", "cls")

#: OHEM replaces the ROI heads' sampling (512 per image, 25 % foreground) by the hardest B/N RoIs per image
#: after an NMS among them; the two are the review's 2 (papers/001, Table 1) and the two "tunable
#: parameters" Lin et al. name for OHEM (papers/003, §5.5.1). The foreground ratio is gone (§4.1).
HYPERPARAMETERS = (
    Hyperparameter(
        "batch_size_per_image",
        512,
        "B/N: the hardest RoIs kept per image (Shrivastava et al. §4.1); the detector's standard batch (§4.2): "
        "B = 128 over N = 2 images in their Fast R-CNN, 512 per image in detectron2's Faster R-CNN",
    ),
    Hyperparameter(
        "selection_nms_thresh",
        0.7,
        "IoU above which a RoI is removed by a harder overlapping one before the selection (§4.1); None: no NMS",
    ),
)


def check_ohem_options(
    *,
    batch_size_per_image: int,
    selection_nms_thresh: Optional[float],
    positive_fraction: Optional[float],
    selection_loss: str,
) -> None:
    """Raise a ValueError naming the bad value and the fix (shared by the functions and the ROI heads)."""
    if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image, int) or batch_size_per_image < 1:
        raise ValueError(
            f"batch_size_per_image={batch_size_per_image!r} must be an integer >= 1: the hardest RoIs kept per "
            "image (B/N; 512 in detectron2's Faster R-CNN, 64 in the paper's Fast R-CNN)."
        )
    if selection_nms_thresh is not None and not 0.0 < selection_nms_thresh <= 1.0:
        raise ValueError(
            f"selection_nms_thresh={selection_nms_thresh!r} must be in (0, 1] (the paper uses 0.7), or None to "
            "select without NMS (mmdetection's OHEMSampler)."
        )
    if positive_fraction is not None and not 0.0 < positive_fraction <= 1.0:
        raise ValueError(
            f"positive_fraction={positive_fraction!r} must be None (no foreground ratio, the paper) or in (0, 1] "
            "(a cap on the hard positives, mmdetection: 0.25)."
        )
    if selection_loss not in SELECTION_LOSSES:
        raise ValueError(
            f"selection_loss={selection_loss!r} is not one of {SELECTION_LOSSES}: 'cls_box' (classification + box "
            "loss, the paper) or 'cls' (classification only, mmdetection)."
        )


def hard_example_ranking(
    losses: Tensor, boxes: Tensor, *, nms_thresh: Optional[float] = 0.7, groups: Optional[Tensor] = None
) -> Tensor:
    """The RoIs of one image from the hardest down, after the NMS by loss when ``nms_thresh`` is set.

    Args:
        losses: (R,) each RoI's loss (no gradient is needed or kept).
        boxes: (R, 4) the RoIs, (x0, y0, x1, y1).
        nms_thresh: a RoI overlapping a harder kept RoI by IoU > ``nms_thresh`` is removed (0.7 in the
            paper); None: no NMS.
        groups: (R,) int; when given, the NMS runs within each group only (the authors' code: per label).

    Returns:
        (S,) int64 indices into the R RoIs, S <= R, by descending loss; equal losses by ascending index.
    """
    assert losses.dim() == 1 and boxes.shape == (losses.numel(), 4), (tuple(losses.shape), tuple(boxes.shape))
    losses = losses.detach()
    order = torch.sort(losses, descending=True, stable=True).indices
    if nms_thresh is None or order.numel() == 0:
        return order
    # Score each RoI by its rank (strictly decreasing), so that the NMS sees no ties and keeps the order above.
    rank_scores = torch.arange(order.numel(), 0, -1, dtype=torch.float32, device=losses.device)
    sorted_groups = torch.zeros_like(order) if groups is None else groups[order].long()
    keep = batched_nms(boxes.detach()[order].float(), rank_scores, sorted_groups, float(nms_thresh))
    return order[torch.sort(keep).values]


def take_hardest(
    ranking: Tensor,
    num_samples: int,
    *,
    positive: Optional[Tensor] = None,
    positive_fraction: Optional[float] = None,
) -> Tensor:
    """The first ``num_samples`` of a ranking (all of it when shorter), or with a cap on the positives.

    Args:
        ranking: (S,) indices from :func:`hard_example_ranking`, hardest first.
        num_samples: B/N.
        positive: (R,) bool, the foreground RoIs (needed with ``positive_fraction``).
        positive_fraction: None (the paper): no ratio. A value f: the hardest min(#positives,
            int(num_samples * f)) positives, then the hardest negatives up to ``num_samples`` in all
            (mmdetection's OHEMSampler with detectron2's counts).

    Returns:
        (min(num_samples, S),) indices, in the order of ``ranking``.
    """
    assert num_samples >= 0, num_samples
    if positive_fraction is None:
        return ranking[:num_samples]
    assert positive is not None, "positive_fraction needs the positive mask"
    is_pos = positive[ranking].bool()
    num_pos = min(int(is_pos.sum()), int(num_samples * positive_fraction))
    num_neg = min(int((~is_pos).sum()), num_samples - num_pos)
    pos_rank = torch.cumsum(is_pos.long(), 0) - 1  # rank among the positives of the ranking
    neg_rank = torch.cumsum((~is_pos).long(), 0) - 1
    keep = torch.where(is_pos, pos_rank < num_pos, neg_rank < num_neg)
    return ranking[keep]


def select_hard_examples(
    losses: Tensor,
    boxes: Tensor,
    num_samples: int,
    *,
    nms_thresh: Optional[float] = 0.7,
    groups: Optional[Tensor] = None,
    positive: Optional[Tensor] = None,
    positive_fraction: Optional[float] = None,
) -> Tensor:
    """OHEM's selection for one image (§4.1): NMS among the RoIs by loss, then the hardest ``num_samples``.

    Args:
        losses, boxes, nms_thresh, groups: as :func:`hard_example_ranking`.
        num_samples, positive, positive_fraction: as :func:`take_hardest`.

    Returns:
        (min(num_samples, S),) int64 indices into the R RoIs, hardest first (S: the RoIs left by the NMS).
    """
    ranking = hard_example_ranking(losses, boxes, nms_thresh=nms_thresh, groups=groups)
    return take_hardest(ranking, num_samples, positive=positive, positive_fraction=positive_fraction)


@torch.no_grad()
def selection_statistics(losses: Tensor, positive: Tensor, ranking: Tensor, selected: Tensor) -> Tensor:
    """Where the selected RoIs of one image stand among all of them.

    Args:
        losses: (R,) each RoI's loss; positive: (R,) bool, the foreground RoIs.
        ranking: (S,) the RoIs left by the NMS; selected: the RoIs kept for the backward pass.

    Returns:
        (8,) float: the number of RoIs, of RoIs left by the NMS, of selected RoIs, of foreground RoIs, of
        selected foreground RoIs, the sum of all losses, the sum of the selected ones' losses, and 1 for
        the image. Sum it over images and pass it to :func:`ohem_scalars`.
    """
    losses = losses.detach().float()
    positive = positive.bool()
    values = [
        losses.numel(), ranking.numel(), selected.numel(), positive.sum(), positive[selected].sum(),
        losses.sum(), losses[selected].sum(), 1,
    ]  # fmt: skip
    return torch.stack([torch.as_tensor(v, dtype=torch.float32, device=losses.device) for v in values])


def ohem_scalars(stats: Tensor) -> Dict[str, float]:
    """Training signals from :func:`selection_statistics` summed over the images of a batch.

    - ``num_candidates``, ``num_selected``: RoIs per image, all and kept for the backward pass;
    - ``nms_removed``: RoIs per image removed by the NMS (0 without NMS);
    - ``fg_fraction_candidates``: the foreground share of all RoIs, what training on every RoI would see;
    - ``fg_fraction_selected``: the foreground share of the selected RoIs;
    - ``mean_loss_candidates``, ``mean_loss_selected``: the mean selection loss of all and of the selected
      RoIs; the selected ones are the hardest, so theirs is the higher.

    Keys whose set is empty (no RoIs in the batch) are left out rather than logged as NaN.
    """
    total, survivors, selected, fg, fg_selected, loss_all, loss_selected, images = stats.tolist()
    scalars = {}
    if images > 0:
        scalars.update(
            num_candidates=total / images, num_selected=selected / images, nms_removed=(total - survivors) / images
        )
    if total > 0:
        scalars.update(fg_fraction_candidates=fg / total, mean_loss_candidates=loss_all / total)
    if selected > 0:
        scalars.update(fg_fraction_selected=fg_selected / selected, mean_loss_selected=loss_selected / selected)
    return scalars
