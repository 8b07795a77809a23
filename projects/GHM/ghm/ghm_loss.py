"""The gradient harmonizing mechanism (Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019,
arXiv:1811.05181) as pure tensor code: GHM-C, ASL1 and GHM-R. Nothing here imports detectron2.

Notation of the paper (§"Gradient Harmonizing Mechanism"):

* GHM-C. For a sigmoid output p = sigmoid(x) and a binary label p* the cross-entropy gradient w.r.t. x is
  p - p*, and its norm g = |p - p*| in [0, 1] says how hard the element is (Eqs. 2-3). The gradient density
  GD(g) counts the elements whose g lies near g (Eqs. 4-6), and each element is weighted by
  beta_i = N / GD(g_i) (Eq. 7), N the number of elements, so

      L_GHM-C = 1/N * sum_i beta_i * L_CE(p_i, p*_i) = sum_i L_CE(p_i, p*_i) / GD(g_i)        (Eq. 8)

  Unit-region approximation: [0, 1] is cut into M regions of length eps = 1/M, r_j = [(j-1) eps, j eps);
  R_j is the number of elements in r_j, and GD(g) ~ R_ind(g) / eps = R_ind(g) * M. EMA: the counts are
  smoothed over iterations, S_j^t = alpha * S_j^(t-1) + (1 - alpha) * R_j^t, and GD(g) ~ S_ind(g) * M.
  With eps = 1 (M = 1) every beta is 1 and GHM-C is the plain cross-entropy averaged over the elements.
* GHM-R. The authentic smooth L1 ASL1(d) = sqrt(d^2 + mu^2) - mu has gradient d / sqrt(d^2 + mu^2), whose
  norm g_r = |d| / sqrt(d^2 + mu^2) lies in [0, 1); GHM-R weights ASL1 by the density of g_r exactly as
  GHM-C weights the cross-entropy: L_GHM-R = 1/N * sum_i beta_i * ASL1(d_i), N the number of regression
  elements (4 per positive anchor).

Where the authors' code differs (libuyu/GHM_Detection ``mmdet/core/loss/ghm_loss.py``, the same code as
mmdetection's ``GHMC`` / ``GHMR``), ``mode="official"`` reproduces it (see :data:`MODES`):

* the density is S_ind(g) * n, n the number of regions that are non-empty in the current call, instead of
  S_ind(g) * M. Early in training, when all negatives sit in the first region and the positives in the
  last, n = 2 and the loss is M / 2 = 15 times the paper's (M = 30);
* only the non-empty regions' EMA is updated; the paper's S_j^t = alpha S_j^(t-1) + (1 - alpha) R_j^t
  decays a region that is empty this iteration (R_j^t = 0).
* (in the detector, not here) mmdetection calls the loss once per FPN level, see ``ghm.meta_arch``.

Both start the EMA at 0 (the paper does not say; the authors' code does), so the first iteration divides
by (1 - alpha) R_j and weights every element 1 / (1 - alpha) = 4 times (alpha = 0.75); the factor is
1 / (1 - alpha^t) at iteration t, < 1.06 from t = 10 on.

The counts R_j are per process unless ``all_reduce=True``, which averages them over the workers of
torch.distributed before the EMA (then every GPU uses the density of the whole batch; the authors' code
and mmdetection count per GPU).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "MODES",
    "HYPERPARAMETERS",
    "DensityOutput",
    "GradientDensity",
    "asl1",
    "asl1_gradient_norm",
    "bin_indices",
    "ghm_c_loss",
    "ghm_r_loss",
    "density_summary",
]

#: "paper": GD(g) = S_ind(g) * M and every region's EMA is updated (the paper's text);
#: "official": GD(g) = S_ind(g) * n, n = non-empty regions of the call, and only those regions' EMA is
#: updated (libuyu/GHM_Detection, mmdetection's GHMC / GHMR).
MODES = ("paper", "official")

#: The hyper-parameters GHM adds to RetinaNet, with the values of the default COCO config
#: (GHM-C + GHM-R, the paper's best: Table "regression losses", 36.4 AP on minival vs 35.8 with smooth L1).
#: Their names are RetinaNetGHM's config keys (``model.<name>``).
HYPERPARAMETERS = (
    Hyperparameter("ghm_c_bins", 30, "M, unit regions of g = |p - p*| for GHM-C (GD ~ S * M; M=30 best of 5-40)"),
    Hyperparameter("ghm_c_momentum", 0.75, "alpha of the EMA of the GHM-C region counts S_j (authors' config)"),
    Hyperparameter("ghm_r_mu", 0.02, "mu of ASL1(d) = sqrt(d^2 + mu^2) - mu (GHM-R; 0.02 matches smooth L1's AP)"),
    Hyperparameter("ghm_r_bins", 10, "unit regions of g_r = |d| / sqrt(d^2 + mu^2) for GHM-R (authors' config)"),
    Hyperparameter("ghm_r_momentum", 0.7, "alpha of the EMA of the GHM-R region counts (authors' config)"),
    Hyperparameter("ghm_r_loss_weight", 10.0, "factor on the GHM-R loss (authors' config; the paper gives none)"),
)


def bin_indices(g: Tensor, bins: int) -> Tensor:
    """ind(g) - 1: the 0-based unit region of each gradient norm, region j = [j/M, (j+1)/M).

    The region edges are j / M in float32, the comparisons of the authors' code (``g >= edges[j]`` and
    ``g < edges[j+1]``); g = 1 (and anything above) falls in the last region, as there (its last edge is
    1 + 1e-6 for GHM-C and 1e3 for GHM-R). Negative g does not occur (g is a norm).

    Args:
        g: gradient norms, any shape. bins: M.

    Returns:
        int64 tensor of g's shape with values in 0..M-1.
    """
    inner = torch.arange(1, bins, device=g.device, dtype=torch.float32) / bins  # j / M, j = 1..M-1
    return torch.bucketize(g.detach().float(), inner, right=True)


@dataclass
class DensityOutput:
    """Result of one :class:`GradientDensity` call on N valid elements.

    Attributes:
        weights: beta_i for every element (the input's shape): N / GD(g_i) on valid elements, 0 elsewhere.
        bin_index: (input shape) int64 region index 0..M-1 of every element (also of invalid ones).
        counts: (M,) float R_j of this call (averaged over workers with ``all_reduce``).
        bin_weights: (M,) beta of an element of each region, 0 for regions that are empty in this call.
        num_valid: scalar float tensor N (this process), at least 1 so that it can divide.
    """

    weights: Tensor
    bin_index: Tensor
    counts: Tensor
    bin_weights: Tensor
    num_valid: Tensor


class GradientDensity(nn.Module):
    """The unit-region gradient density with its EMA (§"Unit Region Approximation"), and beta = N / GD.

    The EMA S_j is the buffer ``acc_sum`` (M,): it is saved in checkpoints and follows ``.to(device)``.
    Every call updates it (one call per iteration, or per FPN level in the authors' code).
    """

    def __init__(self, bins: int, momentum: float, *, mode: str = "paper", all_reduce: bool = False):
        """
        Args:
            bins: M, the number of unit regions of [0, 1] (eps = 1 / M).
            momentum: alpha of S_j^t = alpha S_j^(t-1) + (1 - alpha) R_j^t; 0 uses the call's own counts.
            mode: "paper" or "official", see :data:`MODES` and the module docstring.
            all_reduce: average R_j over the torch.distributed workers before the EMA (default: per GPU,
                as the authors' code).
        """
        super().__init__()
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins={bins!r} must be a positive integer (the number of unit regions M).")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1) (0 = the batch's own counts, no EMA).")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}; 'paper' is the text, 'official' the authors' code.")
        self.bins = bins
        self.momentum = float(momentum)
        self.mode = mode
        self.all_reduce = all_reduce
        self.register_buffer("acc_sum", torch.zeros(bins))  # S_j, starts at 0 as in the authors' code

    def extra_repr(self) -> str:
        return f"bins={self.bins}, momentum={self.momentum}, mode={self.mode!r}, all_reduce={self.all_reduce}"

    def _reduce(self, counts: Tensor) -> Tensor:
        if not self.all_reduce or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return counts
        world = torch.distributed.get_world_size()
        if world == 1:
            return counts
        torch.distributed.all_reduce(counts)  # a fresh tensor of this call: reduced in place
        return counts / world

    @torch.no_grad()
    def forward(self, g: Tensor, valid: Optional[Tensor] = None) -> DensityOutput:
        """Count the valid elements per region, update the EMA, and return beta for every element.

        Args:
            g: gradient norms in [0, 1], any shape (detached here).
            valid: bool mask broadcastable to g; None = every element. Invalid (ignored) elements are not
                counted and get weight 0.
        """
        index = bin_indices(g, self.bins)
        if valid is None:
            valid = torch.ones_like(index, dtype=torch.bool)
        else:
            valid = valid.expand_as(index)
        # Invalid elements go to an extra region M that is dropped: no boolean indexing of a large tensor.
        counts = torch.bincount(torch.where(valid, index, self.bins).flatten(), minlength=self.bins + 1)[: self.bins]
        counts = self._reduce(counts.to(self.acc_sum.dtype))
        nonempty = counts > 0
        if self.momentum > 0:
            ema = self.momentum * self.acc_sum + (1.0 - self.momentum) * counts
            if self.mode == "official":
                ema = torch.where(nonempty, ema, self.acc_sum)  # the authors update non-empty regions only
            self.acc_sum.copy_(ema)
            density = ema
        else:
            density = counts
        # GD = S * M (paper, eps = 1 / M) or S * n with n the non-empty regions (authors' code).
        regions = nonempty.sum().clamp(min=1).to(counts.dtype) if self.mode == "official" else float(self.bins)
        num_valid = valid.sum().clamp(min=1).to(counts.dtype)
        # beta = N / GD(g); a region with no element this call gets 0 (and never divides by 0).
        bin_weights = torch.where(nonempty, num_valid / (density.clamp(min=1e-12) * regions), torch.zeros_like(density))
        weights = torch.where(valid, bin_weights[index], torch.zeros((), dtype=bin_weights.dtype, device=g.device))
        return DensityOutput(
            weights=weights, bin_index=index, counts=counts, bin_weights=bin_weights, num_valid=num_valid
        )


def ghm_c_loss(
    logits: Tensor, targets: Tensor, density: GradientDensity, valid: Optional[Tensor] = None
) -> Tuple[Tensor, DensityOutput]:
    """GHM-C (Eq. 8 with the unit-region density): 1/N * sum_i beta_i * BCE(sigmoid(x_i), p*_i).

    The cross-entropy is the plain sigmoid BCE, without a focal term. N cancels against beta's numerator,
    so the loss is sum_i BCE_i / GD(g_i), the authors' ``BCE(weights).sum() / tot``.

    Args:
        logits: (..., K) or any shape, the class logits x (one binary problem per element).
        targets: float tensor of the same shape, 1 for the ground-truth class of a positive anchor, else 0.
        density: the :class:`GradientDensity` holding this loss' EMA (updated by the call).
        valid: bool mask broadcastable to logits (e.g. (A, 1) for anchors), False for ignored elements.

    Returns:
        (loss, density output); the loss is a scalar connected to ``logits`` (0 with no valid element).
    """
    assert logits.shape == targets.shape, f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ"
    g = (torch.sigmoid(logits.detach().float()) - targets.float()).abs()  # Eq. 3
    out = density(g, valid)
    loss = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), weight=out.weights.to(logits.dtype), reduction="sum"
    )
    return loss / out.num_valid, out


def asl1(d: Tensor, mu: float = 0.02) -> Tensor:
    """Authentic smooth L1, ASL1(d) = sqrt(d^2 + mu^2) - mu (element-wise; ~d^2 / (2 mu) near 0, ~|d| - mu far)."""
    return torch.sqrt(d * d + mu * mu) - mu


def asl1_gradient_norm(d: Tensor, mu: float = 0.02) -> Tensor:
    """g_r = |dASL1/dd| = |d| / sqrt(d^2 + mu^2), in [0, 1)."""
    return d.abs() / torch.sqrt(d * d + mu * mu)


def ghm_r_loss(
    pred: Tensor, target: Tensor, density: GradientDensity, *, mu: float = 0.02, valid: Optional[Tensor] = None
) -> Tuple[Tensor, DensityOutput]:
    """GHM-R: 1/N * sum_i beta_i * ASL1(d_i), d = pred - target, beta from the density of g_r.

    Args:
        pred, target: (P, 4) (or any equal shapes) predicted and target box deltas of the positive anchors;
            every coordinate is one element.
        density: the :class:`GradientDensity` holding this loss' EMA (updated by the call).
        mu: ASL1's mu.
        valid: optional bool mask broadcastable to pred.

    Returns:
        (loss, density output); 0 (connected to ``pred``) when there is no element.
    """
    if mu <= 0:
        raise ValueError(f"mu={mu} must be > 0 (ASL1's smoothing length).")
    assert pred.shape == target.shape, f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
    d = pred - target
    out = density(asl1_gradient_norm(d.detach().float(), mu), valid)
    loss = (asl1(d, mu) * out.weights.to(d.dtype)).sum()
    return loss / out.num_valid, out


@torch.no_grad()
def density_summary(outputs: Sequence[DensityOutput]) -> Dict[str, float]:
    """Training signals of one loss, as plain floats (one device-to-host copy).

    Args:
        outputs: the :class:`DensityOutput` of every call of one iteration (one, or one per FPN level in
            the authors' mode); their counts are added.

    Keys: ``frac_lowest_bin`` / ``frac_highest_bin``: share of the valid elements in the first region (the
    easy ones) and in the last (the hardest ones, the paper's outliers); ``nonempty_bins``: regions holding
    an element; ``weight_lowest_bin`` / ``weight_highest_bin``: mean beta of those regions' elements (1 is
    the plain cross-entropy's weight; for GHM-C the first region is nearly all easy negatives). A weight
    is left out when its region is empty, and the dict is empty when there is no valid element (e.g. no
    positive anchor for GHM-R), so no NaN is logged.
    """
    counts = torch.stack([o.counts for o in outputs]).sum(0)
    weighted = torch.stack([o.counts * o.bin_weights for o in outputs]).sum(0)
    values = torch.stack([
        counts[0], counts[-1], counts.sum(), (counts > 0).sum().to(counts.dtype), weighted[0], weighted[-1]
    ]).tolist()
    lowest, highest, total, nonempty, weight_lowest, weight_highest = values
    if total == 0:
        return {}
    stats = {
        "frac_lowest_bin": lowest / total,
        "frac_highest_bin": highest / total,
        "nonempty_bins": nonempty,
    }
    if lowest > 0:
        stats["weight_lowest_bin"] = weight_lowest / lowest
    if highest > 0:
        stats["weight_highest_bin"] = weight_highest / highest
    return stats
