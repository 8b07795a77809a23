"""The distributional ranking (DR) loss (Qian et al., CVPR 2020) as pure tensor functions.

Nothing here imports detectron2. The detector (``meta_arch.py``) hands over the class probabilities of
every anchor, ``(N, R, K)``, and detectron2's anchor labels, ``(N, R)``, with -1 ignored, 0..K-1 the
class of a positive anchor and K background.

Candidates. As in RetinaNet's sigmoid classifier, each (anchor, class) pair is one binary candidate:
the pair (a, y_a) of a positive anchor a is a positive candidate, every other pair of a valid anchor is
a negative (the other K-1 classes of a positive anchor included). Ignored anchors take no part.

For one group of candidates (an image, by default) with positive scores p_+ and negative scores p_-:

1. Re-weighted negative distribution (the worst case over the distributions close to uniform in KL
   divergence, in its Lagrangian form): q_-,j = exp(p_-,j / λ_-) / Σ_j' exp(p_-,j' / λ_-), a softmax
   at temperature λ_-; it puts its mass on the hard (high-scoring) negatives.
2. Re-weighted positive distribution: q_+,i = exp(-p_+,i / λ_+) / Σ_i' exp(-p_+,i' / λ_+), a softmin
   at temperature λ_+; it puts its mass on the hard (low-scoring) positives.
3. Expectations P_- = Σ_j q_-,j p_-,j and P_+ = Σ_i q_+,i p_+,i.
4. Rank the two expectations with a margin γ, through the logistic loss smoothed by L:
   ℓ(P_- - P_+ + γ), ℓ(z) = (1/L) log(1 + exp(L z)) (large L: the hinge [z]_+).
5. loss = τ · Σ_groups ℓ / N_groups-per-scope (see ``scope`` below), τ the classification weight.

Gradients flow through q as well as through p, as in the authors' code (nothing is detached).

Defaults are the authors' (idstcv/DR_loss ``SigmoidDRLoss``): λ_+ = 1, λ_- = 0.1 / ln 3.5 ≈ 0.0798
(so a negative scored 0.1 higher weighs 3.5 times more), γ = 0.5, L = 6, τ = 4.

Groups (``scope`` × ``class_grouping``):

- ``scope="image"`` (default, the paper: "for each image ... pairs of candidates within the image"):
  one DR term per image, the loss is τ times their mean over the N images of the batch.
  ``scope="batch"`` (the authors' code): one term over all candidates of the batch, times τ.
- ``class_grouping="pooled"`` (default, the paper and the code): every class's candidates share one
  q_- and one q_+. ``"per_class"``: one term per class (one-vs-rest), summed over the classes.

A group without positives (an image without objects) has no P_+; like the authors' code we use
P_+ = 1, the best possible positive score, so its term ℓ(P_- - 1 + γ) still pushes the hard negatives
down (below 1 - γ). A group without negatives has P_- = 0 (the code's empty softmax sum). Neither
produces NaN values or gradients.
"""
import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "CLASS_GROUPINGS",
    "DEFAULT_NEG_LAMBDA",
    "HYPERPARAMETERS",
    "SCOPES",
    "DR_OPTIONS",
    "DRLossOutput",
    "DRLossSettings",
    "check_dr_options",
    "dr_loss",
    "dr_statistics",
    "sigmoid_dr_loss",
    "smoothed_logistic",
]

SCOPES = ("image", "batch")
CLASS_GROUPINGS = ("pooled", "per_class")

#: The authors' λ_-: exp(0.1 / λ_-) = 3.5, a negative 0.1 higher in score gets 3.5x the weight.
DEFAULT_NEG_LAMBDA = 0.1 / math.log(3.5)

#: What DR loss adds to RetinaNet (the review, papers/001 Table 1, counts 4). τ, the weight of the
#: classification loss against the box loss, is a loss weight like RetinaNet's own, not counted.
HYPERPARAMETERS = (
    Hyperparameter("pos_lambda", 1.0, "λ_+: temperature of the softmin re-weighting the positives (q_+)"),
    Hyperparameter("neg_lambda", DEFAULT_NEG_LAMBDA, "λ_-: temperature of the softmax re-weighting the negatives (q_-)"),
    Hyperparameter("margin", 0.5, "γ: margin by which P_+ must exceed P_- (the ranking constraint)"),
    Hyperparameter("logistic_scale", 6.0, "L: smoothness of ℓ(z) = log(1 + exp(Lz)) / L"),
)

# Probabilities lie in [0, 1], so p / λ stays finite for any λ > 0; the group maximum is still
# subtracted before exp so that a small λ (e.g. 1e-3: exp(1000)) does not overflow.
_TINY = 1e-12


@dataclass
class DRLossOutput:
    """Result of :func:`dr_loss` for G groups (G = N, 1, N*K or K, see the module docstring).

    Attributes:
        loss: scalar, τ · Σ_g ℓ_g / (N for ``scope="image"``, 1 for ``"batch"``).
        terms: (G,) ℓ(P_- - P_+ + γ) per group, before τ.
        expected_pos: (G,) P_+; 1 (the fallback) where the group has no positives.
        expected_neg: (G,) P_-; 0 where the group has no negatives.
        has_pos, has_neg: (G,) bool, whether the group has positive / negative candidates.
        mean_pos, mean_neg: (G,) plain (uniform) means of the positive / negative scores, no gradient,
            0 where the set is empty; against P_+ / P_- they show what the re-weighting does.
        margin: γ, kept for the statistics.
    """

    loss: Tensor
    terms: Tensor
    expected_pos: Tensor
    expected_neg: Tensor
    has_pos: Tensor
    has_neg: Tensor
    mean_pos: Tensor
    mean_neg: Tensor
    margin: float


def check_dr_options(
    *, pos_lambda: float, neg_lambda: float, margin: float, logistic_scale: float, cls_loss_weight: float,
    scope: str, class_grouping: str,
) -> None:
    """Raise a ValueError naming the bad value (shared by :func:`dr_loss` and the detector)."""
    for name, value in (("pos_lambda", pos_lambda), ("neg_lambda", neg_lambda), ("logistic_scale", logistic_scale)):
        if not value > 0:
            raise ValueError(f"{name}={value} must be > 0 (the authors use pos_lambda=1, neg_lambda=0.1/ln 3.5, L=6).")
    if not margin >= 0:
        raise ValueError(f"margin={margin} must be >= 0 (the paper's γ is 0.5).")
    if not cls_loss_weight > 0:
        raise ValueError(f"cls_loss_weight={cls_loss_weight} must be > 0 (the authors' τ is 4).")
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not one of {SCOPES}: 'image' (the paper) or 'batch' (the authors' code).")
    if class_grouping not in CLASS_GROUPINGS:
        raise ValueError(f"class_grouping={class_grouping!r} is not one of {CLASS_GROUPINGS}.")


#: The keyword arguments of :func:`dr_loss` / :func:`sigmoid_dr_loss` that a detector sets from its config.
DR_OPTIONS = ("pos_lambda", "neg_lambda", "margin", "logistic_scale", "cls_loss_weight", "scope", "class_grouping")


class DRLossSettings:
    """Mixin of the detectors trained with the DR loss: its settings as attributes of the model (so that
    configs, overrides and the hyper-parameter declarations read them by name), checked once."""

    def set_dr_options(self, **options) -> None:
        """Check (:func:`check_dr_options`) and store every one of :data:`DR_OPTIONS`."""
        if set(options) != set(DR_OPTIONS):
            raise TypeError(f"set_dr_options takes exactly {DR_OPTIONS}, got {tuple(options)}.")
        check_dr_options(**options)
        for name, value in options.items():
            setattr(self, name, value)

    def dr_options(self) -> Dict[str, object]:
        """The stored settings, as keyword arguments of :func:`dr_loss`."""
        return {name: getattr(self, name) for name in DR_OPTIONS}


def smoothed_logistic(z: Tensor, scale: float) -> Tensor:
    """ℓ(z) = (1/L) log(1 + exp(L z)), computed stably (softplus with beta = L)."""
    return F.softplus(z, beta=scale, threshold=20.0)


def _dense_expectation(
    probs: Tensor, mask: Tensor, inv_temperature: float, dims: Tuple[int, ...]
) -> Tuple[Tensor, Tensor]:
    """Σ q p over the masked entries of each group, q = softmax(inv_temperature · p) over the group.

    The groups are what remains after reducing ``dims``. Returns (expectation, non-empty), both shaped
    like the reduction with keepdim=True; an empty group gives expectation 0 and a zero gradient.
    """
    logits = (probs * inv_temperature).masked_fill(~mask, float("-inf"))
    top = logits.detach().amax(dim=dims, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # empty group: all -inf
    weights = torch.exp(logits - top)  # exactly 0 outside the mask
    total = weights.sum(dim=dims, keepdim=True)
    expectation = (weights * probs).sum(dim=dims, keepdim=True) / total.clamp_min(_TINY)
    return expectation, total > 0


def _segment_expectation(
    values: Tensor, groups: Tensor, num_groups: int, inv_temperature: float
) -> Tuple[Tensor, Tensor]:
    """Σ q p per group for a short list of scores ``values`` (P,) with group ids ``groups`` (P,),
    q = softmax(inv_temperature · p) within each group. Returns ((G,) expectation, (G,) non-empty);
    an empty group gives 0."""
    logits = values * inv_temperature
    top = torch.full((num_groups,), float("-inf"), dtype=values.dtype, device=values.device)
    top = top.scatter_reduce(0, groups, logits.detach(), reduce="amax", include_self=True)
    weights = torch.exp(logits - top[groups])
    zeros = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    total = zeros.index_add(0, groups, weights)
    expectation = zeros.index_add(0, groups, weights * values) / total.clamp_min(_TINY)
    return expectation, total > 0


def dr_loss(
    probs: Tensor,
    labels: Tensor,
    *,
    pos_lambda: float = 1.0,
    neg_lambda: float = DEFAULT_NEG_LAMBDA,
    margin: float = 0.5,
    logistic_scale: float = 6.0,
    cls_loss_weight: float = 4.0,
    scope: str = "image",
    class_grouping: str = "pooled",
) -> DRLossOutput:
    """The DR loss of a batch (see the module docstring for the exact arithmetic).

    Args:
        probs: (N, R, K) class probabilities (sigmoid of the logits) of every anchor.
        labels: (N, R) integer anchor labels: -1 ignored, 0..K-1 the class of a positive anchor,
            K (or more) background.
        pos_lambda, neg_lambda: λ_+ and λ_-, temperatures of q_+ (softmin) and q_- (softmax).
        margin: γ. logistic_scale: L. cls_loss_weight: τ.
        scope: "image" (one term per image, mean over images) or "batch" (one term for the batch).
        class_grouping: "pooled" (all classes in one ranking) or "per_class" (one ranking per class,
            summed over classes).

    Returns:
        :class:`DRLossOutput`; ``loss`` is the value to add to the detector's losses.
    """
    check_dr_options(
        pos_lambda=pos_lambda, neg_lambda=neg_lambda, margin=margin, logistic_scale=logistic_scale,
        cls_loss_weight=cls_loss_weight, scope=scope, class_grouping=class_grouping,
    )
    assert probs.dim() == 3, f"probs must be (N, R, K), got {tuple(probs.shape)}"
    assert labels.shape == probs.shape[:2], f"labels {tuple(labels.shape)} must be (N, R) of probs {tuple(probs.shape)}"
    if probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()  # the softmax sums run over up to ~10^7 candidates: float16 overflows at 65504
    num_images, _, num_classes = probs.shape
    valid = labels >= 0
    foreground = valid & (labels < num_classes)
    # Positive candidates: (anchor, its class); the rest of the valid anchors' (anchor, class) pairs are negative.
    classes = torch.arange(num_classes, device=labels.device)
    positive = labels[..., None] == classes  # (N, R, K) bool; -1 and K match no class
    negative = valid[..., None] & ~positive

    per_class = class_grouping == "per_class"
    if scope == "image":
        dims, group_shape = ((1,) if per_class else (1, 2)), ((num_images, num_classes) if per_class else (num_images,))
    else:
        dims, group_shape = ((0, 1) if per_class else (0, 1, 2)), ((num_classes,) if per_class else (1,))
    num_groups = math.prod(group_shape)

    expected_neg, has_neg = _dense_expectation(probs, negative, 1.0 / neg_lambda, dims)
    expected_neg, has_neg = expected_neg.reshape(num_groups), has_neg.reshape(num_groups)

    # Positives are few (at most one candidate per anchor): gather them and reduce per group.
    image_idx, anchor_idx = foreground.nonzero(as_tuple=True)
    pos_class = labels[image_idx, anchor_idx]
    pos_probs = probs[image_idx, anchor_idx, pos_class]
    if scope == "image":
        groups = image_idx * num_classes + pos_class if per_class else image_idx
    else:
        groups = pos_class if per_class else torch.zeros_like(image_idx)
    expected_pos, has_pos = _segment_expectation(pos_probs, groups, num_groups, -1.0 / pos_lambda)
    expected_pos = torch.where(has_pos, expected_pos, torch.ones_like(expected_pos))  # no positives: P_+ = 1

    terms = smoothed_logistic(expected_neg - expected_pos + margin, logistic_scale)
    loss = cls_loss_weight * terms.sum() / (num_images if scope == "image" else 1)

    with torch.no_grad():
        zeros = torch.zeros(num_groups, dtype=probs.dtype, device=probs.device)
        pos_count = zeros.index_add(0, groups, torch.ones_like(pos_probs))
        mean_pos = zeros.index_add(0, groups, pos_probs) / pos_count.clamp_min(1)
        neg_sum = torch.where(negative, probs, torch.zeros_like(probs)).sum(dim=dims).reshape(num_groups)
        mean_neg = neg_sum / negative.sum(dim=dims).reshape(num_groups).clamp_min(1)
    return DRLossOutput(
        loss=loss, terms=terms, expected_pos=expected_pos, expected_neg=expected_neg, has_pos=has_pos,
        has_neg=has_neg, mean_pos=mean_pos, mean_neg=mean_neg, margin=margin,
    )


def sigmoid_dr_loss(logits: Tensor, labels: Tensor, **kwargs) -> DRLossOutput:
    """:func:`dr_loss` on sigmoid(logits); logits (N, R, K), labels (N, R), keyword arguments as there."""
    return dr_loss(torch.sigmoid(logits), labels, **kwargs)


@torch.no_grad()
def dr_statistics(output: DRLossOutput) -> Dict[str, float]:
    """Training signals as plain floats (one device-to-host copy); a key whose set is empty is left out.

    - ``expected_pos`` / ``expected_neg``: mean P_+ / P_- over the groups that have positives /
      negatives (the fallback P_+ = 1 is not averaged in).
    - ``mean_pos`` / ``mean_neg``: the plain mean scores of the same groups; expected_neg above
      mean_neg shows q_- concentrating on the hard negatives, expected_pos below mean_pos q_+ on the
      hard positives.
    - ``margin_violation``: fraction of the groups with positives where P_- - P_+ + γ > 0, i.e. the
      ranking constraint P_+ >= P_- + γ does not hold yet.
    - ``groups_without_pos``: fraction of the groups that fell back to P_+ = 1.
    """
    has_pos, has_neg = output.has_pos, output.has_neg
    pos_count, neg_count = has_pos.sum(), has_neg.sum()
    pos_den, neg_den = pos_count.clamp_min(1), neg_count.clamp_min(1)
    violated = (output.expected_neg - output.expected_pos + output.margin > 0) & has_pos
    values = torch.stack([
        pos_count.to(output.terms.dtype),
        neg_count.to(output.terms.dtype),
        (output.expected_pos * has_pos).sum() / pos_den,
        (output.expected_neg * has_neg).sum() / neg_den,
        (output.mean_pos * has_pos).sum() / pos_den,
        (output.mean_neg * has_neg).sum() / neg_den,
        violated.sum() / pos_den,
        1.0 - has_pos.float().mean(),
    ]).tolist()
    n_pos, n_neg, p_pos, p_neg, m_pos, m_neg, violation, without_pos = values
    stats = {"groups_without_pos": without_pos}
    if n_pos > 0:
        stats.update(expected_pos=p_pos, mean_pos=m_pos, margin_violation=violation)
    if n_neg > 0:
        stats.update(expected_neg=p_neg, mean_neg=m_neg)
    return stats
