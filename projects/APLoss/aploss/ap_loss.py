"""AP-loss and its error-driven update (Chen et al., "Towards Accurate One-Stage Object Detection with
AP-Loss", CVPR 2019, arXiv:1904.06373; TPAMI extension arXiv:2008.07294), as pure tensor functions.

Nothing here imports detectron2. The detector (``meta_arch.py``) hands over the class logits of a whole
minibatch and one label per (anchor, class) pair; everything below works on the flattened list.

Notation (paper §3; the section names below are the CVPR paper's). A *sample* is one (image, anchor,
class) pair of the minibatch, with score s (the raw class logit: no sigmoid, AP depends on the order of
the scores only) and label 1 (the anchor is matched to an object of that class), 0 (any other pair of a
valid anchor) or -1 (every pair of an ignored anchor, IoU in [0.4, 0.5): it is neither ranked nor
pushed). P and N are the positive and negative samples. All classes and all images of the minibatch
form ONE ranked list, as in the paper's Algorithm 1 and the authors' code (cccorn/AP-loss@10092a1,
lib/model/aploss.py, whose input is the (images, anchors, classes) score tensor of the batch); the K
sigmoid-free outputs of an anchor are K independent binary samples (one-vs-rest), there is no softmax
across classes.

Ranking task and AP-loss (§3, 'Ranking task and AP-loss'):

    x_ij   = -(s_i - s_j) = s_j - s_i                        pairwise difference, i in P, j in P u N
    H(x)   = 0 if x < -delta;  x / (2 delta) + 1/2 if |x| <= delta;  1 if x > delta
             (the "piecewise step function" that replaces the Heaviside step; delta = 1 in the paper)
    rank+(i) = 1 + sum_{k in P, k != i} H(x_ik),   rank(i) = rank+(i) + sum_{j in N} H(x_ij)
    L_ij   = H(x_ij) / rank(i)  for i in P, j in N (the primary terms), y_ij = 1 on P x N
    L_AP   = 1 - AP = 1 - (1/|P|) sum_i rank+(i) / rank(i) = (1/|P|) sum_{i,j} L_ij y_ij
           = (1/|P|) <L(x), y>          (sum_j L_ij = 1 - prec_i, with prec_i = rank+(i) / rank(i))

Interpolated AP (§3, 'Interpolated AP'; Algorithm 1): the positives are visited in ascending
score (descending recall); prec~_i = max(prec_i, prec~ of the positives visited before) = the largest
precision at this or any higher recall, as in interpolated-AP evaluation. Where prec~_i > prec_i, the
primary terms of positive i are rescaled, L~_ij = L_ij (1 - prec~_i) / (1 - prec_i), so that
sum_j L~_ij = 1 - prec~_i. The loss is then L_AP = (1/|P|) sum_i (1 - prec~_i) = 1 - interpolated AP.
With ``interpolated=False``, L~ = L.

Error-driven update (§3, 'Error-driven update', 'Backpropagation'; Algorithm 1). L_AP is piecewise
constant in the scores when H is a step, and flat wherever H saturates when H is piecewise linear, so
its gradient is useless (zero almost everywhere, or at saturation). As in perceptron learning, the
update of x_ij is the error between the current primary term and the target one, L*_ij = 0 for every
positive-negative pair (the ideal ranking puts every positive above every negative), and it is
back-propagated through x_ij = s_j - s_i in place of dL/dx_ij. Per sample, divided by |P| (the last
step of Algorithm 1):

    g_i = -(1/|P|) sum_{j in N} L~_ij = -(1 - prec~_i) / |P|      for i in P
    g_j = +(1/|P|) sum_{i in P} L~_ij                              for j in N
    g   = 0                                                         for ignored samples

(so sum over all samples of g is 0). :class:`APLossFunction` returns L_AP from ``forward`` and g from
``backward``; g is NOT the gradient of L_AP (tests/test_aploss_core.py shows the difference).

Cost. A negative below min_{i in P} s_i - delta has x_ij < -delta against every positive, so H = 0 and
L_ij = 0: it neither changes the loss nor receives an update. Such negatives are dropped first (the
authors' code does the same); what is left is the *band* N_b (``num_active_negatives``). Once training
has pushed most negatives below the lowest positive, N_b is a small part of the ~10^5 x K negative
pairs per image; this is what keeps the authors' per-positive loop affordable. At initialisation every
score sits at the prior, so N_b is nearly all of N. To stay cheap there too, nothing here forms the
|P| x |N_b| matrix: H is piecewise linear, so both sums over pairs follow from where each score falls
among the sorted positive scores. The positives are sorted; each band negative finds its window of
positives within +-delta by binary search (``torch.searchsorted``); sum_j H(x_ij) for every positive
comes from histograms of the window ends plus a cumulative sum, and sum_i L~_ij for every negative from
prefix sums over the positives. Time O((|P| + |N_b|) log |P|), no sort of the negatives; the sums are
float64. The negatives are visited in chunks of ``NEGATIVE_CHUNK`` samples, twice (the ranks first, then
the updates), so the temporaries (windows, float64 sums) take a few MiB whatever |N_b| is; only the
update g itself (the size of the scores) is kept. The results equal the pairwise sums up to rounding (the
tests compare them with a literal Algorithm 1 loop).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "DEFAULT_DELTA",
    "NEGATIVE_CHUNK",
    "HYPERPARAMETERS",
    "APLossFunction",
    "APLossOutput",
    "APLossUpdate",
    "anchor_class_labels",
    "ap_loss",
    "error_driven_update",
    "piecewise_step",
]

#: delta of the piecewise step function: the paper's best (its ablation of the step width).
DEFAULT_DELTA = 1.0

#: Samples per chunk of the two passes over the negatives. At R50-FPN 320^2, batch 2 (3 M samples, nearly
#: all in the band at initialisation) the peak memory of one update fell from 188 MiB with whole-list
#: temporaries to 34 MiB with chunks of 2^18 (12 MiB of it the update itself), at the same speed.
NEGATIVE_CHUNK = 1 << 18

#: What AP-loss adds to RetinaNet (attached to :class:`aploss.RetinaNetAPLoss`). Minibatch training
#: (one ranking over all images of the batch) is how the loss is defined, not a tuned value.
HYPERPARAMETERS = (
    Hyperparameter(
        "delta",
        DEFAULT_DELTA,
        "half-width of the piecewise-linear step H that replaces the Heaviside step in the primary terms "
        "L_ij (paper §3, 'Piecewise step function'; delta = 1 is the paper's best)",
    ),
    Hyperparameter(
        "interpolated_ap",
        True,
        "optimise interpolated AP: each positive's precision is raised to the best precision at any higher "
        "recall, and its primary terms rescaled (paper §3, 'Interpolated AP', Algorithm 1)",
    ),
)


def _check_delta(delta: float) -> None:
    if not delta > 0:
        raise ValueError(
            f"delta={delta!r} must be > 0: it is the half-width of the piecewise step function H "
            "(the paper uses 1.0)."
        )


def piecewise_step(x: Tensor, delta: float = DEFAULT_DELTA) -> Tensor:
    """H(x): 0 for x < -delta, x / (2 delta) + 1/2 for -delta <= x <= delta, 1 for x > delta (§3)."""
    _check_delta(delta)
    return (x / (2.0 * delta) + 0.5).clamp(0.0, 1.0)


def anchor_class_labels(gt_labels: Tensor, num_classes: int) -> Tensor:
    """Labels of the (anchor, class) samples from detectron2-style anchor labels.

    Args:
        gt_labels: (N, R) integer anchor labels: 0..K-1 the matched object's class, K background,
            -1 ignored (IoU between the two matcher thresholds).
        num_classes: K.

    Returns:
        (N, R, K) int8: 1 at (anchor, its object's class), 0 at every other class of a valid anchor,
        -1 at every class of an ignored anchor.
    """
    assert gt_labels.dim() == 2, f"gt_labels must be (N, R), got {tuple(gt_labels.shape)}"
    n, r = gt_labels.shape
    labels = torch.zeros((n, r, num_classes), dtype=torch.int8, device=gt_labels.device)
    labels[gt_labels < 0] = -1
    img, anchor = ((gt_labels >= 0) & (gt_labels < num_classes)).nonzero(as_tuple=True)
    labels[img, anchor, gt_labels[img, anchor]] = 1
    return labels


def _prefix_sums(values: Tensor) -> Tensor:
    """[0, v_0, v_0 + v_1, ...] in float64 (length n + 1), so that a window sum is one subtraction."""
    return torch.cat([values.new_zeros(1, dtype=torch.float64), torch.cumsum(values.double(), dim=0)])


class _Windows:
    """For each value v, [lo, hi): the ascending positives p_i with |v - p_i| <= delta.

    i < lo  <=>  p_i < v - delta  <=>  H(v - p_i) = 1;   lo <= i < hi  <=>  H(v - p_i) = (v - p_i)/(2 delta) + 1/2;
    i >= hi  <=>  p_i > v + delta  <=>  H(v - p_i) = 0.

    One binary search per value instead of two: the 2P window ends p_i - delta and p_i + delta are sorted
    together; among the ends below v, the upper ones count lo and the lower ones count hi. (A value equal
    to an end may fall on either side of it; H is continuous there, so the sums are the same.)
    """

    def __init__(self, sorted_pos: Tensor, delta: float):
        ends, order = torch.cat([sorted_pos - delta, sorted_pos + delta]).sort()
        is_upper = (order >= sorted_pos.numel()).long()
        zero = is_upper.new_zeros(1)
        self.ends = ends
        self.lo_at = torch.cat([zero, is_upper.cumsum(0)])
        self.hi_at = torch.cat([zero, (1 - is_upper).cumsum(0)])

    def __call__(self, values: Tensor) -> Tuple[Tensor, Tensor]:
        slot = torch.searchsorted(self.ends, values)
        return self.lo_at[slot], self.hi_at[slot]


def _sums_over_values(sorted_pos: Tensor, values: Tensor, lo: Tensor, hi: Tensor, delta: float) -> Tensor:
    """sum_v H(v - p_i) for every positive i (float64, length P), from each value's window [lo, hi).

    Value v adds 1 to the positives below lo and c_v - p_i / (2 delta), c_v = v / (2 delta) + 1/2, to those
    in [lo, hi): counted with histograms of lo and hi over the P + 1 slots and a cumulative sum, so the
    values need no sorting.
    """
    num_pos = sorted_pos.numel()
    c = values.double() / (2.0 * delta) + 0.5

    def upto(index: Tensor, weights: Optional[Tensor] = None) -> Tensor:  # per i: sum over values with index <= i
        hist = torch.bincount(index, weights=weights, minlength=num_pos + 1)[:num_pos]
        return torch.cumsum(hist.double(), dim=0)

    lo_count, hi_count = upto(lo), upto(hi)
    above = values.numel() - lo_count  # lo > i
    inside = lo_count - hi_count  # lo <= i < hi
    return above + (upto(lo, c) - upto(hi, c)) - sorted_pos.double() / (2.0 * delta) * inside


def _weighted_sums_over_positives(
    w_prefix: Tensor, wp_prefix: Tensor, values: Tensor, lo: Tensor, hi: Tensor, delta: float
) -> Tensor:
    """sum_i w_i H(v - p_i) for every value v (float64), from the prefix sums of w and of w * p over the
    ascending positives (:func:`_prefix_sums`): the full weight below lo, w_i ((v - p_i) / (2 delta) + 1/2)
    in [lo, hi)."""
    w_in = w_prefix[hi] - w_prefix[lo]
    wp_in = wp_prefix[hi] - wp_prefix[lo]
    return w_prefix[lo] + (values.double() * w_in - wp_in) / (2.0 * delta) + 0.5 * w_in


def _band_negatives(flat: Tensor, flat_labels: Tensor, threshold: Tensor):
    """Yields (indices, scores) of the negatives with score >= threshold, NEGATIVE_CHUNK samples at a time."""
    for start in range(0, flat.numel(), NEGATIVE_CHUNK):
        chunk = flat[start : start + NEGATIVE_CHUNK]
        index = ((flat_labels[start : start + NEGATIVE_CHUNK] == 0) & (chunk >= threshold)).nonzero().squeeze(1)
        yield index + start, chunk[index]


@dataclass
class APLossUpdate:
    """Result of :func:`error_driven_update` for one ranked list.

    Attributes:
        loss: 0-dim float32, L_AP = 1 - (interpolated) AP; 0 when there is no positive.
        update: the error-driven update g, shape of the scores (their dtype).
        num_pos: |P|.
        num_active_negatives: |N_b|, the negatives with score >= min positive score - delta (the only
            ones with a nonzero primary term); 0 when there is no positive.
        min_pos_score: 0-dim tensor, the lowest positive score; None when there is no positive.
    """

    loss: Tensor
    update: Tensor
    num_pos: int
    num_active_negatives: int
    min_pos_score: Optional[Tensor]


@torch.no_grad()
def error_driven_update(
    scores: Tensor, labels: Tensor, delta: float = DEFAULT_DELTA, interpolated: bool = True
) -> APLossUpdate:
    """L_AP and its error-driven update g (Algorithm 1), for one ranked list: every element of
    ``scores`` is one sample. See the module docstring for the equations.

    Args:
        scores: any shape, e.g. (N, R, K) class logits of a minibatch (all its images are ranked together).
        labels: the shape of ``scores``, values 1 (positive), 0 (negative), -1 (ignored).
        delta: width of the piecewise step function (> 0).
        interpolated: use interpolated AP (the paper, the authors' code) or plain AP.
    """
    _check_delta(delta)
    assert labels.shape == scores.shape, f"labels {tuple(labels.shape)} must match scores {tuple(scores.shape)}"
    flat = scores.detach().reshape(-1).float()
    flat_labels = labels.reshape(-1)
    update = torch.zeros_like(flat)
    pos_idx = (flat_labels == 1).nonzero().squeeze(1)
    num_pos = pos_idx.numel()
    if num_pos == 0:  # no ranking to learn; L_AP := 0 and nothing is pushed (authors' code too)
        return APLossUpdate(flat.new_zeros(()), update.view_as(scores).to(scores.dtype), 0, 0, None)

    pos_scores, pos_order = flat[pos_idx].sort()  # ascending: the order of Algorithm 1's loop
    min_pos = pos_scores[0]
    band_threshold = min_pos - delta  # the negatives below it have every L_ij = 0

    # rank+(i) = 1 + sum_{k != i} H(s_k - s_i) = 1/2 + sum_k H(s_k - s_i), since H(0) = 1/2.
    windows = _Windows(pos_scores, delta)
    pos_lo, pos_hi = windows(pos_scores)
    rank_pos = 0.5 + _sums_over_values(pos_scores, pos_scores, pos_lo, pos_hi, delta)
    rank, num_band = rank_pos.clone(), 0  # rank(i) = rank+(i) + sum_j H(x_ij), summed chunk by chunk
    for _, neg_scores in _band_negatives(flat, flat_labels, band_threshold):
        neg_lo, neg_hi = windows(neg_scores)
        rank += _sums_over_values(pos_scores, neg_scores, neg_lo, neg_hi, delta)
        num_band += neg_scores.numel()
    prec = rank_pos / rank
    if interpolated:
        prec_used = torch.cummax(prec, dim=0).values  # best precision at this or a higher recall
        rescale = (1.0 - prec_used) / (1.0 - prec).clamp_min(1e-12)  # (1 - MaxPrec) / (1 - prec_i)
        scale = torch.where(prec_used > prec, rescale, torch.ones_like(prec))
    else:
        prec_used, scale = prec, torch.ones_like(prec)

    # g_j = (1/|P|) sum_i L~_ij = (1/|P|) sum_i w_i H(s_j - s_i), with w_i = scale_i / rank(i).
    weight = scale / rank
    w_prefix, wp_prefix = _prefix_sums(weight), _prefix_sums(weight * pos_scores.double())
    for neg_index, neg_scores in _band_negatives(flat, flat_labels, band_threshold):
        neg_lo, neg_hi = windows(neg_scores)
        neg_update = _weighted_sums_over_positives(w_prefix, wp_prefix, neg_scores, neg_lo, neg_hi, delta)
        update[neg_index] = (neg_update / num_pos).float()
    update[pos_idx[pos_order]] = (-(1.0 - prec_used) / num_pos).float()
    loss = (1.0 - prec_used).mean().float()
    return APLossUpdate(loss, update.view_as(scores).to(scores.dtype), num_pos, num_band, min_pos)


class APLossFunction(torch.autograd.Function):
    """L_AP with the error-driven update as its backward (Algorithm 1).

    ``APLossFunction.apply(scores, labels, delta, interpolated)`` returns ``(loss, stats)``: the 0-dim
    L_AP (at least float32) and a non-differentiable float64 tensor [|P|, |N_b|, min positive score (0
    without positives)].
    ``backward`` returns ``grad_loss * g`` for the scores: the update of Algorithm 1, not the gradient of
    the forward's loss. Use :func:`ap_loss` unless you need the raw Function.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, labels: Tensor, delta: float, interpolated: bool) -> Tuple[Tensor, Tensor]:
        result = error_driven_update(scores, labels, delta, interpolated)
        ctx.save_for_backward(result.update)
        min_pos = float(result.min_pos_score) if result.min_pos_score is not None else 0.0
        stats = torch.tensor(
            [float(result.num_pos), float(result.num_active_negatives), min_pos], dtype=torch.float64
        )
        ctx.mark_non_differentiable(stats)
        return result.loss.to(torch.promote_types(scores.dtype, torch.float32)), stats  # float32 for fp16 scores

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_stats: Optional[Tensor]):
        (update,) = ctx.saved_tensors
        return update * grad_loss.to(update.dtype), None, None, None


@dataclass
class APLossOutput:
    """What :func:`ap_loss` returns.

    Attributes:
        loss: 0-dim, L_AP (differentiable: its backward is the error-driven update).
        num_pos: |P|, positive samples in the list.
        num_active_negatives: |N_b|, negatives inside the band (score >= min positive - delta).
        min_pos_score: lowest positive score; None when the list has no positive.
    """

    loss: Tensor
    num_pos: int
    num_active_negatives: int
    min_pos_score: Optional[float]


def ap_loss(
    scores: Tensor, labels: Tensor, *, delta: float = DEFAULT_DELTA, interpolated: bool = True
) -> APLossOutput:
    """AP-loss of one ranked list (e.g. all (image, anchor, class) samples of a minibatch).

    Args:
        scores: any shape, the sigmoid-free class logits (N, R, K) of a minibatch.
        labels: the shape of ``scores``, 1 / 0 / -1 (see :func:`anchor_class_labels`).
        delta: width of the piecewise step function, > 0 (paper: 1).
        interpolated: interpolated AP (paper, default) or plain AP.

    Returns:
        :class:`APLossOutput`; ``loss.backward()`` gives ``scores.grad`` = the update g of Algorithm 1.
    """
    loss, stats = APLossFunction.apply(scores, labels, float(delta), bool(interpolated))
    num_pos, num_active, min_pos = stats.tolist()
    return APLossOutput(loss, int(num_pos), int(num_active), min_pos if num_pos > 0 else None)
