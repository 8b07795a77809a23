"""The Sampling-Free mechanism's arithmetic (Chen et al., "Is Heuristic Sampling Necessary in Training Deep
Object Detectors?", arXiv:1909.04868), as pure tensor functions. Nothing here imports detectron2.

Notation of the paper (§3): a batch (the paper: the training set) has N samples (anchors that take part in
the loss, i.e. not ignored), N_f of them foreground, C object classes, and N_j foreground samples of class
j (sum_j N_j = N_f). The classifier is C independent sigmoids, so the classification loss sums N * C
binary cross-entropies, N_f of them with target 1. No focal term, no sampling (RetinaNet-None, Eq. 2).

1. Optimal bias initialisation (Eqs. 3-4). If every sigmoid starts at the same probability pi, the
   initial loss per foreground sample is

       L(pi) = -log(pi) - (N * C / N_f - 1) * log(1 - pi)                                   (Eq. 3)

   and dL/dpi = -1/pi + (N * C / N_f - 1) / (1 - pi) = 0 at pi* = N_f / (N * C)            (Eq. 4)

   i.e. pi* is the fraction of foreground (sample, class) elements. The classification bias is set to
   b = -log((1 - pi*) / pi*) = -log(N * C / N_f - 1), so that sigmoid(b) = pi*.
   (:func:`optimal_prior`, :func:`prior_to_bias`, :func:`initial_classification_loss`.)

2. Guided loss (Eqs. 5-6). r = w_reg * L_reg / L_cls is computed on the mini-batch WITHOUT
   back-propagation, and the total loss is L = w_reg * L_reg + w_cls * r * L_cls. The regression loss
   only sees foreground, so it is not distorted by the imbalance and sets the scale of the
   classification loss: r * L_cls equals w_reg * L_reg in value, while its gradient is
   r * dL_cls/dtheta. RetinaNet has no loss weights (w_reg = w_cls = 1), so nothing is tuned.
   (:func:`guided_ratio`, :func:`guided_classification_loss`.)

   Degenerate batches (our definition; the paper does not discuss them): r = 0 when L_reg = 0 (a batch
   without any foreground: r * L_cls is then 0, the value the formula gives), and r = 0 when L_cls is 0
   or not finite (nothing to scale; avoids 0/0 and x/0). The ratio is a plain tensor without grad, so
   the returned losses never produce NaN.

3. Class-adaptive threshold (Eq. 7). theta_j = (N_f / N) * (N_j / sum_j N_j): the detection score
   threshold of class j at inference, replacing one fixed threshold for all classes. theta_j = N_j / N,
   the fraction of samples that are foreground of class j; with equal class frequencies it equals pi*.
   (:func:`class_adaptive_thresholds`; :func:`thresholds_from_statistics` picks them, or pi*, from what a
   model counted in training.)

The authors' code (chenjoya/sampling-free@01dfd40) differs; :class:`OfficialGuidedLoss` reproduces its
guided loss (see its docstring and the project README).

Faster R-CNN (two stages, each trained on all its samples): the RPN's objectness is one sigmoid (C = 1),
so 1.-3. apply as they are, with N the valid anchors. The ROI classifier is a softmax over C classes and
the background. Eqs. 3-4 are written for sigmoids; their criterion (the bias that minimises the initial
loss, every foreground class sharing one bias) carried to the softmax is our derivation, the paper's text
gives none: with the probability pi of each foreground class and 1 - C * pi of the background, the
initial loss per foreground sample is

    L(pi) = -log(pi) - (N / N_f - 1) * log(1 - C * pi)

and dL/dpi = -1/pi + (N / N_f - 1) * C / (1 - C * pi) = 0 at pi = N_f / (N * C), Eq. 4's pi* again.
The logits (b_fg, ..., b_fg, b_bg) give it with b_bg = 0 and b_fg = log(pi / (1 - C * pi))
= -log((N - N_f) * C / N_f); with C = 1 this is the sigmoid bias of Eq. 4.
(:func:`softmax_prior_to_bias`, :func:`initial_softmax_classification_loss`.) Eq. 7 is unchanged: theta_j
= N_j / N compares with the softmax probability of class j. :func:`stage_guided_loss` applies a guided-loss
mode to one stage's (cls, box) pair.
"""
import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "HYPERPARAMETERS",
    "GUIDED_LOSS_MODES",
    "optimal_prior",
    "prior_to_bias",
    "set_sigmoid_prior",
    "initial_classification_loss",
    "guided_ratio",
    "guided_classification_loss",
    "class_adaptive_thresholds",
    "OfficialGuidedLoss",
    "OFFICIAL_RCNN_CLS_SCALE",
    "softmax_prior_to_bias",
    "initial_softmax_classification_loss",
    "stage_guided_loss",
]

#: The review (papers/001, Table 1) counts 0 hyper-parameters for Sampling-Free, and the paper derives
#: every value: the prior from the data (Eq. 4), the loss scale from the regression loss (Eq. 5), the
#: thresholds from the data (Eq. 7). The authors'-code mode's warm-up length (100 iterations) is a
#: setting of that code, not of the method.
HYPERPARAMETERS: Tuple[Hyperparameter, ...] = ()

#: "paper": r recomputed on every mini-batch (Eqs. 5-6). "official": the authors' GuidedLoss (r measured
#: on the first warm-up iterations, then frozen, plus learned uncertainty weights). "off": no scaling
#: (RetinaNet-None of §3.1; for ablations only, the paper reports it diverges without a tiny loss weight).
GUIDED_LOSS_MODES = ("paper", "official", "off")


def optimal_prior(num_foreground: float, num_samples: float, num_classes: int) -> float:
    """pi* = N_f / (N * C), the minimiser of the initial loss (Eq. 4).

    Args:
        num_foreground: N_f, foreground samples (anchors matched to an object).
        num_samples: N, samples in the loss (foreground + background; ignored anchors excluded).
        num_classes: C, the number of sigmoid classifiers per sample.

    Raises:
        ValueError: N_f <= 0 (the optimum is pi = 0, an infinite bias), N_f > N, or C < 1.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1.")
    if not 0 < num_foreground <= num_samples:
        raise ValueError(
            f"optimal_prior needs 0 < num_foreground <= num_samples, got N_f={num_foreground}, "
            f"N={num_samples}: measure it on data that contains objects."
        )
    return float(num_foreground) / (float(num_samples) * num_classes)


def prior_to_bias(prior: float) -> float:
    """b = -log((1 - pi) / pi), the bias whose sigmoid is pi (RetinaNet's prior init, with pi = pi*).

    Raises:
        ValueError: pi is not in (0, 1).
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior={prior} must be in (0, 1); it is the initial sigmoid score.")
    return -math.log((1.0 - prior) / prior)


@torch.no_grad()
def set_sigmoid_prior(bias: Tensor, prior_buffer: Tensor, prior: float) -> Tensor:
    """Eq. 4 applied to a layer: fill ``bias`` with :func:`prior_to_bias` (pi) and ``prior_buffer`` with pi,
    in place.

    Returns:
        the change of the bias (its shape): a batch whose logits were computed with the old bias is
        shifted by it, so the first batch already sees the new initialisation.
    """
    old = bias.clone()
    bias.fill_(prior_to_bias(prior))
    prior_buffer.fill_(prior)
    return bias - old


def initial_classification_loss(prior: float, num_foreground: float, num_samples: float, num_classes: int) -> float:
    """Eq. 3: the classification loss per foreground sample when every score is pi,
    -log(pi) - (N * C / N_f - 1) * log(1 - pi)."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior={prior} must be in (0, 1).")
    ratio = float(num_samples) * num_classes / float(num_foreground)
    return -math.log(prior) - (ratio - 1.0) * math.log1p(-prior)


def guided_ratio(loss_cls: Tensor, loss_reg: Tensor, reg_weight: float = 1.0) -> Tensor:
    """r = w_reg * L_reg / L_cls (Eq. 5), computed without back-propagation.

    Args:
        loss_cls: scalar L_cls (any normalisation; it cancels in r * L_cls).
        loss_reg: scalar L_reg.
        reg_weight: w_reg, the detector's regression-loss weight (RetinaNet: 1).

    Returns:
        A scalar tensor without grad. 0 where L_cls <= 0, L_cls or L_reg not finite, or L_reg = 0 (see the
        module docstring).
    """
    with torch.no_grad():
        num = reg_weight * loss_reg.detach()
        den = loss_cls.detach()
        ok = (den > 0) & torch.isfinite(den) & torch.isfinite(num)
        return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))


def guided_classification_loss(loss_cls: Tensor, loss_reg: Tensor, reg_weight: float = 1.0) -> Tuple[Tensor, Tensor]:
    """The classification term of Eq. 6, r * L_cls (w_cls = 1), and r.

    The value equals w_reg * L_reg; the gradient is r * dL_cls/dtheta: nothing flows through r, and
    nothing reaches the regression branch from this term.
    """
    r = guided_ratio(loss_cls, loss_reg, reg_weight)
    return r * loss_cls, r


def class_adaptive_thresholds(class_counts: Tensor, num_samples) -> Tensor:
    """theta_j = (N_f / N) * (N_j / sum_j N_j) (Eq. 7).

    Args:
        class_counts: (C,) N_j, foreground samples of each class.
        num_samples: N, all samples (foreground + background).

    Returns:
        (C,) float64 thresholds; a class never counted gets 0 (every score passes, the per-level top-k
        still applies).

    Raises:
        ValueError: no foreground counted, or N smaller than N_f.
    """
    counts = torch.as_tensor(class_counts).to(torch.float64)
    assert counts.dim() == 1, f"class_counts must be (C,), got {tuple(counts.shape)}"
    n_f = counts.sum()
    n = torch.as_tensor(num_samples, dtype=torch.float64, device=counts.device)
    if not n_f > 0:
        raise ValueError("class_adaptive_thresholds needs foreground counts (sum N_j > 0); none were counted.")
    if not n >= n_f:
        raise ValueError(f"num_samples={float(n)} is smaller than the foreground count {float(n_f)}.")
    return (n_f / n) * (counts / n_f)


def thresholds_from_statistics(counts: Tensor, prior: Tensor) -> Optional[Tensor]:
    """The thresholds of Eq. 7 that a model's training statistics give, or None when they give none.

    Args:
        counts: (C + 1,) samples counted during training, N_j of each class then the background last.
        prior: 0-dim pi the classifier was initialised with; 0 when not known.

    Returns:
        (C,) float32 theta_j (:func:`class_adaptive_thresholds`) when a foreground sample was counted;
        else theta_j = pi for every class when pi > 0 (Eq. 7 with equal class frequencies equals pi*, Eq. 4);
        else None, and the caller falls back to its fixed threshold.
    """
    n_f, pi = torch.stack([counts[:-1].sum().double(), prior.double()]).tolist()  # one device sync
    if n_f > 0:
        return class_adaptive_thresholds(counts[:-1], counts.sum()).float()
    if pi > 0:
        return torch.full((counts.numel() - 1,), pi, dtype=torch.float32, device=counts.device)
    return None


#: The authors' Faster R-CNN code (chenjoya/sampling-free@5f133dc, roi_heads/box_head/loss.py) multiplies
#: the guided classification loss of the ROI head by 2 ("classification_scale: 2.0 for rcnn" in its
#: README); its RPN and RetinaNet use 1. A constant of that code, not of the method.
OFFICIAL_RCNN_CLS_SCALE = 2.0


def softmax_prior_to_bias(prior: float, num_classes: int) -> Tuple[float, float]:
    """(b_fg, b_bg): the biases of a softmax over C classes + background that give every foreground class
    the probability pi and the background 1 - C * pi: b_bg = 0, b_fg = log(pi / (1 - C * pi)) (module
    docstring, "Faster R-CNN").

    Raises:
        ValueError: C < 1, or pi not in (0, 1 / C).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1.")
    if not 0.0 < prior < 1.0 / num_classes:
        raise ValueError(
            f"prior={prior} must be in (0, 1 / num_classes) = (0, {1.0 / num_classes:.6g}): it is each foreground "
            "class's initial softmax probability, and the background keeps 1 - num_classes * prior."
        )
    return math.log(prior / (1.0 - num_classes * prior)), 0.0


def initial_softmax_classification_loss(
    prior: float, num_foreground: float, num_samples: float, num_classes: int
) -> float:
    """The softmax form of Eq. 3, per foreground sample: -log(pi) - (N / N_f - 1) * log(1 - C * pi), the
    cross-entropy of N_f foreground samples at probability pi and N - N_f background ones at 1 - C * pi."""
    if not 0.0 < prior < 1.0 / num_classes:
        raise ValueError(f"prior={prior} must be in (0, 1 / num_classes).")
    ratio = float(num_samples) / float(num_foreground)
    return -math.log(prior) - (ratio - 1.0) * math.log1p(-num_classes * prior)


def stage_guided_loss(loss_cls: Tensor, loss_reg: Tensor, mode: str, *, cls_weight: float = 1.0,
                      official_scale: float = 1.0) -> Tuple[Tensor, Tensor]:
    """One detector stage's classification term of Eq. 6 and its r, for a mode of :data:`GUIDED_LOSS_MODES`
    other than RetinaNet's "official" (:class:`OfficialGuidedLoss`).

    Args:
        loss_cls: w_cls * L_cls, the stage's weighted classification loss (detectron2 applies its
            ``loss_weight`` before returning a loss).
        loss_reg: w_reg * L_reg, the stage's weighted box loss.
        mode: "paper": w_cls * r * L_cls with r = w_reg * L_reg / L_cls (Eqs. 5-6); "official": that times
            ``official_scale`` (the authors' Faster R-CNN code: 1 in the RPN, 2 in the ROI head); "off":
            ``loss_cls`` unchanged (r reported as 1).
        cls_weight: w_cls (so that r = w_cls * loss_reg / loss_cls = w_reg * L_reg / L_cls).

    Returns:
        (the classification loss to optimise, r without grad).
    """
    if mode not in GUIDED_LOSS_MODES:
        raise ValueError(f"guided_loss={mode!r} is not one of {GUIDED_LOSS_MODES}.")
    if mode == "off":
        return loss_cls, torch.ones_like(loss_cls.detach())
    r = guided_ratio(loss_cls, loss_reg, reg_weight=cls_weight)
    scale = official_scale if mode == "official" else 1.0
    return scale * r * loss_cls, r


def _all_reduce_mean(x: Tensor) -> Tensor:
    """Average over processes when torch.distributed is running (identity otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            x = x.clone()
            torch.distributed.all_reduce(x)
            x /= world
    return x


class OfficialGuidedLoss(nn.Module):
    """The guided loss of the authors' code (chenjoya/sampling-free@01dfd40, ``GuidedLoss``).

    Differences from Eqs. 5-6:

    - r = L_reg / L_cls is recomputed only on the first ``warmup_iters`` iterations (per GPU); at the last
      of them it is averaged over GPUs and then frozen for the rest of training (the code's default 100;
      its ``NoWarmupGuidedLoss`` is ``warmup_iters=1``).
    - Each loss is divided by 2 sigma_i^2 with learned sigma = (sigma_cls, sigma_reg) (initialised to 1),
      and log(sigma_cls * sigma_reg) is added as a further loss (uncertainty weighting).

    The state (``iters``, ``ratio``) is kept in buffers, so it survives a checkpoint/resume.
    """

    def __init__(self, warmup_iters: int = 100):
        super().__init__()
        if warmup_iters < 1:
            raise ValueError(f"warmup_iters={warmup_iters} must be >= 1 (the code's default is 100).")
        self.warmup_iters = int(warmup_iters)
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.register_buffer("ratio", torch.zeros(()))
        self.sigmas = nn.Parameter(torch.ones(2))

    def forward(self, loss_cls: Tensor, loss_reg: Tensor) -> Dict[str, Tensor]:
        """Args: scalar L_cls and L_reg. Returns "loss_cls", "loss_box_reg" and "loss_sigma"."""
        if int(self.iters) < self.warmup_iters:
            self.ratio.copy_(guided_ratio(loss_cls, loss_reg))
            self.iters += 1
            if int(self.iters) == self.warmup_iters:
                self.ratio.copy_(_all_reduce_mean(self.ratio))
        var2 = 2 * self.sigmas**2
        return {
            "loss_cls": self.ratio * loss_cls / var2[0],
            "loss_box_reg": loss_reg / var2[1],
            "loss_sigma": self.sigmas.prod().log(),
        }
