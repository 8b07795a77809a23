"""IoU-balanced sampling (Pang et al., "Libra R-CNN: Towards Balanced Learning for Object Detection",
CVPR 2019, §3.1) as pure tensor functions; nothing here imports detectron2.

The ROI heads of Faster R-CNN train on N sampled negatives per image. Random sampling draws each of the
M negative proposals with probability p = N / M (Eq. 1), and since most negatives barely touch an object,
the hard ones (IoU with the ground truth close to the background threshold) are rarely drawn.
IoU-balanced sampling splits the negatives' IoU interval evenly into K bins, gives each bin an equal
share N / K of the quota, and draws uniformly inside each bin, so a negative of bin k is drawn with

    p_k = N / K * 1 / M_k,    k in [0, K)        (Eq. 2)

where M_k is the number of negatives in bin k. K = 3 in the paper.

What the paper leaves open, and what we do (the README compares it with the authors' code):

- **The binned interval** ``[low, iou_high)``. The paper splits "the sampling interval", the IoU range
  that negatives come from: [0, 0.5) in Faster R-CNN, whose matcher makes a proposal background below
  IoU 0.5 (``iou_high=0.5``, the default). The authors' code (mmdetection ``IoUBalancedNegSampler``)
  splits [0, highest IoU of any proposal of the image): the ground-truth boxes are appended to the
  proposals with IoU 1, so the bins are [0, 1/3), [1/3, 2/3), [2/3, 1) and the top bin never holds a
  negative (``iou_high=None``).
- **A short bin** (M_k < N / K, where Eq. 2 would exceed 1) gives all it has, and the remaining quota
  is drawn uniformly at random from the binned negatives not drawn yet (the authors' code; the paper
  does not say).
- **The floor** (the authors' code; the paper has none): with ``floor_thr`` = t, the negatives of
  IoU <= t are kept out of the bins, the bins split [t, iou_high), and the floor negatives are drawn at
  random for ``floor_fraction`` of the quota plus whatever the bins could not fill. ``floor_thr=None``
  (default) puts every negative in the bins, which start at IoU 0.
- Whatever is still missing (a short floor) is drawn at random from all negatives not drawn yet, so
  ``min(N, M)`` negatives are always returned; with M <= N all of them.

Positives are not part of the method: :func:`subsample_labels_iou_balanced` draws them at random as
detectron2 does, or instance-balanced (an equal number per ground-truth box, the paper's §3.1
"alternative method" and the authors' config). Every random draw is a uniform permutation from
``generator`` (torch's default generator of the tensors' device when None); the only Python loops
are over nothing larger than the K bins.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from d2imbalance.analysis.hyperparameters import ROI_HEADS_SAMPLING, Hyperparameter

__all__ = [
    "BIN_RANGES",
    "HYPERPARAMETERS",
    "POSITIVE_SAMPLINGS",
    "check_iou_balanced_options",
    "iou_bins",
    "iou_balanced_scalars",
    "matcher_negative_iou_top",
    "negative_bin_counts",
    "sample_instance_balanced_positives",
    "sample_iou_balanced_negatives",
    "subsample_labels_iou_balanced",
]

#: ``"negatives"``: the bins split the negatives' IoU interval, [0, 0.5) in Faster R-CNN (the paper);
#: ``"max_iou"``: up to the image's highest proposal IoU, ground truth included (the authors' code).
BIN_RANGES = ("negatives", "max_iou")
#: ``"random"``: detectron2's uniform draw; ``"instance_balanced"``: equal numbers per object.
POSITIVE_SAMPLINGS = ("random", "instance_balanced")

#: IoU-balanced sampling keeps Faster R-CNN's ROI sampling (512 per image, 25 % foreground) and adds K.
#: The authors' floor (floor_thr, floor_fraction) is off in the paper and in their config, so it is a
#: switch of their code, not counted (the review, papers/001 Table 1, counts 3).
HYPERPARAMETERS = ROI_HEADS_SAMPLING + (
    Hyperparameter(
        "num_bins", 3, "K: IoU bins sharing the negatives' quota equally (Pang et al., Eq. 2: p_k = N/K * 1/M_k)"
    ),
)


def check_iou_balanced_options(
    *, num_bins: int, floor_thr: Optional[float], floor_fraction: float, iou_high: Optional[float] = None
) -> None:
    """Raise a ValueError naming the bad value and the fix (shared by the sampler and the ROI heads)."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins={num_bins!r} must be an integer >= 1 (the paper's K is 3; 1 is random sampling).")
    if floor_thr is not None:
        if not 0.0 <= floor_thr < 1.0:
            hint = " mmdetection's floor_thr=-1 (no floor) is floor_thr=None here." if floor_thr < 0 else ""
            raise ValueError(f"floor_thr={floor_thr!r} must be None (no floor, the paper) or in [0, 1).{hint}")
        if iou_high is not None and floor_thr >= iou_high:
            raise ValueError(
                f"floor_thr={floor_thr!r} must be below the top of the binned interval ({iou_high}): every "
                "negative would fall in the floor. Lower floor_thr, or pass None for no floor."
            )
    if not 0.0 <= floor_fraction <= 1.0:
        raise ValueError(f"floor_fraction={floor_fraction!r} must be in [0, 1] (the authors' config uses 0).")
    if floor_fraction > 0 and floor_thr is None:
        raise ValueError(
            f"floor_fraction={floor_fraction!r} takes a share of the quota from the floor, but floor_thr=None "
            "means there is none: set floor_thr (e.g. 0.1) or floor_fraction=0."
        )


def matcher_negative_iou_top(thresholds: Sequence[float], labels: Sequence[int]) -> float:
    """The IoU below which a matcher labels a proposal background: the top of the negatives' interval.

    Args:
        thresholds: the matcher's thresholds with -inf and +inf at the ends, as detectron2's
            ``Matcher.thresholds`` holds them ([-inf, 0.5, inf] in Faster R-CNN's ROI heads).
        labels: one label per interval (-1 ignore, 0 background, 1 foreground), ``Matcher.labels``.

    Returns:
        The highest upper end of the intervals labelled 0 (0.5 for Faster R-CNN's ROI heads).
    """
    assert len(labels) == len(thresholds) - 1, (thresholds, labels)
    tops = [thresholds[i + 1] for i, label in enumerate(labels) if label == 0]
    if not tops or not math.isfinite(max(tops)):
        raise ValueError(
            f"The proposal matcher (thresholds {list(thresholds)}, labels {list(labels)}) has no background "
            "interval with a finite upper IoU to split into bins; use bin_range='max_iou' or fix the matcher."
        )
    return float(max(tops))


def iou_bins(ious: Tensor, num_bins: int, low: float, high: Union[float, Tensor]) -> Tensor:
    """The bin of each IoU: k where low + k*w <= IoU < low + (k+1)*w, w = (high - low) / K; -1 outside
    [low, high) (and everywhere when high <= low).

    Args:
        ious: (R,) IoU values.
        num_bins: K.
        low, high: the binned interval.

    Returns:
        (R,) int64 in [-1, K).
    """
    high = torch.as_tensor(high, dtype=ious.dtype, device=ious.device)
    steps = torch.arange(num_bins + 1, dtype=ious.dtype, device=ious.device) / num_bins
    edges = low + (high - low) * steps
    bins = torch.bucketize(ious, edges, right=True) - 1  # edges[k] <= iou < edges[k + 1] -> k
    return torch.where((bins >= 0) & (bins < num_bins), bins, torch.full_like(bins, -1))


def _random_subset(mask: Tensor, count: int, generator: Optional[torch.Generator]) -> Tensor:
    """(R,) bool: ``count`` entries of ``mask`` drawn uniformly without replacement (all if fewer)."""
    idx = mask.nonzero().squeeze(1)
    if count >= idx.numel():
        return mask.clone()
    chosen = torch.zeros_like(mask)
    if count > 0:
        chosen[idx[torch.randperm(idx.numel(), generator=generator, device=idx.device)[:count]]] = True
    return chosen


def _random_per_group(groups: Tensor, cap: int, generator: Optional[torch.Generator]) -> Tensor:
    """(R,) bool: up to ``cap`` members of each group >= 0, uniformly at random within the group; all of
    a group with at most ``cap`` members; none of group -1. One permutation, no loop over groups."""
    n = groups.numel()
    chosen = torch.zeros(n, dtype=torch.bool, device=groups.device)
    if n == 0 or cap <= 0:
        return chosen
    perm = torch.randperm(n, generator=generator, device=groups.device)
    sorted_groups, order = torch.sort(groups[perm], stable=True)  # each group's members in random order
    first = torch.searchsorted(sorted_groups, sorted_groups)  # where each member's group starts
    rank = torch.arange(n, device=groups.device) - first
    keep = (rank < cap) & (sorted_groups >= 0)
    chosen[perm[order[keep]]] = True
    return chosen


def sample_iou_balanced_negatives(
    ious: Tensor,
    candidates: Tensor,
    num_samples: int,
    *,
    num_bins: int = 3,
    iou_high: Optional[float] = 0.5,
    floor_thr: Optional[float] = None,
    floor_fraction: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Draw ``num_samples`` of the candidate negatives IoU-balanced (Eq. 2: p_k = N/K * 1/M_k).

    1. M <= N candidates: all are returned.
    2. The floor (``floor_thr`` = t): candidates with IoU <= t; none when t is None.
    3. The binned candidates (the rest) get the quota N_b = int(N * (1 - floor_fraction)). If there are
       more than N_b, [low, high) is split into K equal bins (low = t or 0; high = ``iou_high``, or the
       highest IoU in ``ious`` when None), each bin gives min(M_k, N_b // K) drawn uniformly, and the
       shortfall (short bins, and N_b mod K) is drawn uniformly from the binned candidates left.
       Otherwise all binned candidates are taken.
    4. The floor gives N - (number drawn so far) drawn uniformly, or all it has.
    5. If still short (a short floor), the rest comes uniformly from every candidate left.

    Args:
        ious: (R,) each proposal's highest IoU with the image's ground truth (0 without ground truth).
            With ``iou_high=None`` its maximum over all R proposals, positives included, tops the bins.
        candidates: (R,) bool, the negatives to draw from.
        num_samples: N, how many negatives to draw.
        num_bins: K.
        iou_high: top of the binned interval: 0.5, the background threshold of Faster R-CNN (the paper),
            or None for the image's highest IoU (the authors' code).
        floor_thr, floor_fraction: the authors' floor (see above); None / 0 in the paper.
        generator: source of the random permutations, on the device of ``ious``.

    Returns:
        (min(N, M),) int64 indices of the drawn negatives, ascending.
    """
    check_iou_balanced_options(num_bins=num_bins, floor_thr=floor_thr, floor_fraction=floor_fraction, iou_high=iou_high)
    assert ious.shape == candidates.shape and ious.dim() == 1, (tuple(ious.shape), tuple(candidates.shape))
    assert num_samples >= 0, num_samples
    candidates = candidates.bool()
    if int(candidates.sum()) <= num_samples:
        return candidates.nonzero().squeeze(1)

    if floor_thr is None:
        floor, low = torch.zeros_like(candidates), 0.0
    else:
        floor, low = candidates & (ious <= floor_thr), float(floor_thr)
    binned = candidates & ~floor
    quota = int(num_samples * (1.0 - floor_fraction))
    if int(binned.sum()) <= quota:
        chosen = binned.clone()
    else:
        high = ious.max() if iou_high is None else iou_high
        bins = torch.where(binned, iou_bins(ious, num_bins, low, high), torch.full_like(ious, -1, dtype=torch.long))
        chosen = _random_per_group(bins, quota // num_bins, generator)
        chosen |= _random_subset(binned & ~chosen, quota - int(chosen.sum()), generator)  # short bins
    chosen |= _random_subset(floor, num_samples - int(chosen.sum()), generator)
    chosen |= _random_subset(candidates & ~chosen, num_samples - int(chosen.sum()), generator)  # short floor
    return chosen.nonzero().squeeze(1)


def sample_instance_balanced_positives(
    gt_index: Tensor, candidates: Tensor, num_samples: int, *, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Draw ``num_samples`` positives with about the same number per ground-truth box.

    The rule of the authors' ``InstanceBalancedPosSampler``: with more candidates than N, each of the G
    objects gives up to round(N / G) + 1 of its positives, drawn uniformly; a shortfall is drawn
    uniformly from the positives left, an excess is removed uniformly.

    Args:
        gt_index: (R,) int64, the ground-truth box each proposal is matched to.
        candidates: (R,) bool, the positives to draw from.
        num_samples: N.
        generator: as in :func:`sample_iou_balanced_negatives`.

    Returns:
        (min(N, M),) int64 indices, ascending.
    """
    assert gt_index.shape == candidates.shape and gt_index.dim() == 1, (tuple(gt_index.shape), tuple(candidates.shape))
    candidates = candidates.bool()
    idx = candidates.nonzero().squeeze(1)
    if idx.numel() <= num_samples:
        return idx
    num_gts = torch.unique(gt_index[idx]).numel()
    per_gt = int(round(num_samples / num_gts)) + 1
    groups = torch.where(candidates, gt_index.long(), torch.full_like(gt_index, -1, dtype=torch.long))
    chosen = _random_per_group(groups, per_gt, generator)
    taken = int(chosen.sum())
    if taken < num_samples:
        chosen |= _random_subset(candidates & ~chosen, num_samples - taken, generator)
    elif taken > num_samples:
        chosen = _random_subset(chosen, num_samples, generator)
    return chosen.nonzero().squeeze(1)


def subsample_labels_iou_balanced(
    labels: Tensor,
    ious: Tensor,
    num_samples: int,
    positive_fraction: float,
    bg_label: int,
    *,
    num_bins: int = 3,
    iou_high: Optional[float] = 0.5,
    floor_thr: Optional[float] = None,
    floor_fraction: float = 0.0,
    positive_sampling: str = "random",
    gt_index: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """detectron2's ``subsample_labels`` with IoU-balanced negatives.

    The counts are detectron2's: P = min(#positives, int(num_samples * positive_fraction)) positives and
    min(#negatives, num_samples - P) negatives. With ``positive_sampling="random"`` the positives are
    drawn exactly as detectron2 draws them (the first permutation of ``generator``, so the same
    positives for the same generator state); ``"instance_balanced"`` uses
    :func:`sample_instance_balanced_positives` and needs ``gt_index``.

    Args:
        labels: (R,) -1 ignore, ``bg_label`` background, anything else foreground.
        ious: (R,) each proposal's highest IoU with the ground truth.
        num_samples, positive_fraction, bg_label: as detectron2's ``subsample_labels``.
        num_bins, iou_high, floor_thr, floor_fraction: as :func:`sample_iou_balanced_negatives`.
        positive_sampling: one of :data:`POSITIVE_SAMPLINGS`.
        gt_index: (R,) matched ground-truth index of each proposal (instance-balanced positives).
        generator: as in :func:`sample_iou_balanced_negatives`.

    Returns:
        pos_idx, neg_idx: int64 indices into the R proposals.
    """
    if positive_sampling not in POSITIVE_SAMPLINGS:
        raise ValueError(f"positive_sampling={positive_sampling!r} is not one of {POSITIVE_SAMPLINGS}.")
    positive = (labels != -1) & (labels != bg_label)
    negative = labels == bg_label
    pos = positive.nonzero().squeeze(1)
    num_pos = min(pos.numel(), int(num_samples * positive_fraction))
    num_neg = min(int(negative.sum()), num_samples - num_pos)
    if positive_sampling == "random":
        pos_idx = pos[torch.randperm(pos.numel(), generator=generator, device=pos.device)[:num_pos]]
    else:
        if gt_index is None:
            raise ValueError(
                "positive_sampling='instance_balanced' needs gt_index, the matched object of each proposal."
            )
        pos_idx = sample_instance_balanced_positives(gt_index, positive, num_pos, generator=generator)
    neg_idx = sample_iou_balanced_negatives(
        ious, negative, num_neg, num_bins=num_bins, iou_high=iou_high, floor_thr=floor_thr,
        floor_fraction=floor_fraction, generator=generator,
    )
    return pos_idx, neg_idx


@torch.no_grad()
def negative_bin_counts(
    ious: Tensor,
    candidates: Tensor,
    sampled: Tensor,
    *,
    num_bins: int,
    iou_high: Optional[float],
    floor_thr: Optional[float],
) -> Tensor:
    """Where the drawn negatives lie, against all candidates, in the sampler's own bins.

    Args:
        ious, candidates, num_bins, iou_high, floor_thr: as given to :func:`sample_iou_balanced_negatives`.
        sampled: (S,) indices of the drawn negatives.

    Returns:
        (2, K + 2) float: row 0 the drawn negatives, row 1 all candidates; columns 0..K-1 the count per
        bin, K the count outside the bins (the floor, or at or above the top), K+1 the sum of their IoU.
        Sum it over images and pass it to :func:`iou_balanced_scalars`.
    """
    low = 0.0 if floor_thr is None else float(floor_thr)
    high = ious.max() if (iou_high is None and ious.numel()) else (0.0 if iou_high is None else iou_high)
    bins = iou_bins(ious, num_bins, low, high)
    if floor_thr is not None:
        bins = torch.where(ious <= floor_thr, torch.full_like(bins, -1), bins)
    bins = torch.where(bins < 0, torch.full_like(bins, num_bins), bins)  # column K: outside
    drawn = torch.zeros_like(candidates, dtype=torch.bool)
    drawn[sampled] = True
    rows = []
    for mask in (drawn, candidates.bool()):
        counts = torch.bincount(bins[mask], minlength=num_bins + 1).to(ious.dtype)
        rows.append(torch.cat([counts, ious[mask].sum().reshape(1)]))
    return torch.stack(rows)


def iou_balanced_scalars(counts: Tensor) -> Dict[str, float]:
    """Training signals from :func:`negative_bin_counts` (summed over the images of a batch).

    - ``bg_fraction_bin{k}``: share of the drawn negatives in bin k; near 1/K when the bins are full.
    - ``candidate_fraction_bin{k}``: share of all negatives in bin k, what random sampling would draw.
    - ``bg_fraction_outside`` / ``candidate_fraction_outside``: the same outside the bins (the floor).
    - ``bg_mean_iou`` / ``candidate_mean_iou``: mean IoU of the drawn / of all negatives.

    Keys whose set is empty (no negatives in the batch) are left out rather than logged as NaN.
    """
    num_bins = counts.shape[1] - 2
    values = counts.tolist()
    scalars = {}
    for prefix, row in (("bg", values[0]), ("candidate", values[1])):
        total = sum(row[: num_bins + 1])
        if total <= 0:
            continue
        for k in range(num_bins):
            scalars[f"{prefix}_fraction_bin{k}"] = row[k] / total
        scalars[f"{prefix}_fraction_outside"] = row[num_bins] / total
        scalars[f"{prefix}_mean_iou"] = row[num_bins + 1] / total
    return scalars
