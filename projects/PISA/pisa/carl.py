"""Classification-Aware Regression Loss (CARL) of PISA, pure torch; nothing here imports detectron2.

Each positive's regression loss is weighted by its classification score s (the probability of its
ground-truth class): v = (b + (1 - b) s)^k, rescaled to c = v · P / Σ v so that the P weights average 1,
and L_carl = Σ c · L_reg / normaliser. It is added to the detector's own box loss. Because s is not
detached, the gradient reaches the classifier: it grows with the regression loss, so a positive that
regresses badly has its score pushed down and one that regresses well has it pushed up, which ties the
score to the localisation quality. ``detach_score=True`` cuts that path (a score-weighted box loss,
neither the paper's nor the authors' form).
"""
from typing import Tuple

from torch import Tensor

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = ["CARL_HYPERPARAMETERS", "carl_loss", "carl_weights", "check_carl_options"]

#: CARL's two numbers, config keys under the ROI heads' node (the box predictor computes the loss).
CARL_HYPERPARAMETERS: Tuple[Hyperparameter, ...] = (
    Hyperparameter("box_predictor.carl_k", 1.0, "k of CARL: regression-loss weight (b + (1-b)s)^k of a positive of score s"),
    Hyperparameter("box_predictor.carl_bias", 0.2, "b of CARL: the weight of a positive scored 0, before rescaling"),
)


def check_carl_options(*, k: float, bias: float) -> None:
    """Raise a ValueError naming the bad value and the fix."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 0:
        raise ValueError(f"carl_k={k!r} must be a number >= 0 (0 weights every positive 1: the plain box loss).")
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not 0.0 <= bias <= 1.0:
        raise ValueError(f"carl_bias={bias!r} must be in [0, 1] (the authors' config uses 0.2).")


def carl_weights(scores: Tensor, *, k: float, bias: float) -> Tensor:
    """c = v · P / Σ v, v = (b + (1 - b) s)^k, for the (P,) scores of the positives (mean 1)."""
    v = (bias + (1.0 - bias) * scores).pow(k)
    return v * (scores.numel() / v.sum())


def carl_loss(
    scores: Tensor, reg_losses: Tensor, normalizer: float, *, k: float = 1.0, bias: float = 0.2, detach_score: bool = False
) -> Tensor:
    """L_carl = Σ_i c_i · L_reg,i / normaliser.

    Args:
        scores: (P,) each positive's probability of its ground-truth class, with its graph.
        reg_losses: (P,) each positive's regression loss (summed over the box coordinates).
        normalizer: what the box loss is divided by (detectron2: the number of sampled RoIs).
        k, bias: CARL's k and b.
        detach_score: take no gradient through the scores.

    Returns:
        0-dim tensor; 0 (with a graph through the inputs) when there is no positive.
    """
    assert scores.shape == reg_losses.shape and scores.dim() == 1, (tuple(scores.shape), tuple(reg_losses.shape))
    if scores.numel() == 0:
        return (scores.sum() + reg_losses.sum()) * 0.0
    if detach_score:
        scores = scores.detach()
    return (carl_weights(scores, k=k, bias=bias) * reg_losses).sum() / max(float(normalizer), 1.0)
