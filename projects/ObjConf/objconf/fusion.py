"""Fusion of classification score and object confidence at inference (paper §3.3, Eq. 11, Tables 4-5).

Pure torch, no detectron2 import, so it is testable anywhere.

The fused score replaces the classification score everywhere downstream: the score threshold
(``test_score_thresh``), the per-level top-k and NMS all see the fused value. A threshold of 0.05 on a
``product`` score is therefore not the same filter as 0.05 on the class score: with alpha=0.4 a box with
class score 0.05 and confidence 0.8 has fused score 0.05**0.6 * 0.8**0.4 = 0.15.

Fusion methods (Table 4 rows; "obj" in the paper is ``conf`` here):

===============================  ===========================================  =======================
Table 4 row                      ``method``                                   ``conf_thresh``
===============================  ===========================================  =======================
cls                              ``"cls"``: s = cls                           ``None``
cls(obj>0.5)                     ``"cls"``                                    0.5
cls*obj                          ``"cls*conf"``: s = cls * conf               ``None``
cls*obj(obj>0.5)                 ``"cls*conf"``                               0.5
product(alpha=0.4)               ``"product"``: s = conf^a * cls^(1-a), Eq.11 ``None``
product(alpha=0.4, obj>0.5)      ``"product"``                                0.5
===============================  ===========================================  =======================

With a ``conf_thresh`` tau, anchors whose confidence is not above tau get score 0, so the score
threshold drops them ("conf > tau" is kept).
"""

from typing import Optional

import torch
from torch import Tensor

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = ["HYPERPARAMETERS", "FUSION_METHODS", "check_fusion_args", "fuse_scores", "fuse_logits_"]

#: What RetinaNet-Conf (and IoU-aware RetinaNet) add to RetinaNet's focal loss: the fusion exponent,
#: the value the paper tunes (Table 5: 0.2-0.4 tie for RetinaNet-Conf; 0.4-0.5 for IoU-aware, whose
#: configs use 0.5, Eq. 1). Not counted: the loss weights of Eq. 10 (1.0, not tuned), and the
#: settings of variants the paper rejects (CE^w's negative weight w, Table 2; the conf > 0.5 filter,
#: Table 4), which are off in the configs.
HYPERPARAMETERS = (
    Hyperparameter("fusion_alpha", 0.4, "α of the fused score conf^α · cls^(1−α) (Eq. 11; Table 5)"),
)

FUSION_METHODS = ("cls", "cls*conf", "product")


def check_fusion_args(method: str, alpha: float, conf_thresh: Optional[float]) -> None:
    """Raise ValueError for an unknown fusion method, alpha outside [0, 1] or tau outside [0, 1)."""
    if method not in FUSION_METHODS:
        raise ValueError(
            f"Unknown score fusion {method!r}; choose one of {FUSION_METHODS} (Table 4)."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"Fusion exponent alpha={alpha} must lie in [0, 1] (Eq. 11); the paper uses 0.4."
        )
    if conf_thresh is not None and not 0.0 <= conf_thresh < 1.0:
        raise ValueError(
            f"Confidence filter conf_thresh={conf_thresh} must lie in [0, 1) or be None (no filter); "
            "Table 4 uses 0.5."
        )


def fuse_scores(
    cls_prob: Tensor,
    conf_prob: Tensor,
    *,
    method: str = "product",
    alpha: float = 0.4,
    conf_thresh: Optional[float] = None,
) -> Tensor:
    """Fused detection score from probabilities, out of place (reference version; used by the analysis).

    Args:
        cls_prob: sigmoid class scores, shape (..., K).
        conf_prob: sigmoid object confidences, shape (..., 1), broadcast over the K classes.
        method: one of :data:`FUSION_METHODS` (Table 4).
        alpha: exponent of the confidence in ``"product"`` (Eq. 11); Table 5 picks 0.4.
        conf_thresh: tau of the "obj > tau" filter, or None for no filter.

    Returns:
        Tensor of the broadcast shape of ``cls_prob`` and ``conf_prob``.
    """
    check_fusion_args(method, alpha, conf_thresh)
    if method == "cls":
        fused = cls_prob * torch.ones_like(conf_prob)
    elif method == "cls*conf":
        fused = cls_prob * conf_prob
    else:
        fused = conf_prob.pow(alpha) * cls_prob.pow(1.0 - alpha)
    if conf_thresh is not None:
        fused = torch.where(conf_prob > conf_thresh, fused, torch.zeros_like(fused))
    return fused


def fuse_logits_(
    cls_logits: Tensor,
    conf_logits: Tensor,
    *,
    method: str = "product",
    alpha: float = 0.4,
    conf_thresh: Optional[float] = None,
) -> Tensor:
    """In-place version of :func:`fuse_scores` taking logits, for inference.

    ``cls_logits`` is overwritten with the fused score and returned; ``conf_logits`` is overwritten with
    its sigmoid (or with sigmoid**alpha for ``"product"``). The only new allocations are of the size of
    ``conf_logits`` (one value per anchor), so fusion adds no copy of the (R, K) score tensor beyond
    the baseline's in-place sigmoid, and no sort. Arguments are validated once at model construction.

    Args:
        cls_logits: (R, K) class logits of one image and one level.
        conf_logits: (R, 1) confidence logits of the same anchors.

    Returns:
        ``cls_logits``, now holding the fused scores in [0, 1], shape (R, K).
    """
    scores = cls_logits.sigmoid_()
    if method == "cls" and conf_thresh is None:
        return scores  # the baseline; the confidence is not needed
    conf = conf_logits.sigmoid_()
    # The filter mask is taken before conf is raised to alpha below.
    rejected = conf <= conf_thresh if conf_thresh is not None else None
    if method == "cls*conf":
        scores.mul_(conf)
    elif method == "product":
        scores.pow_(1.0 - alpha).mul_(conf.pow_(alpha))
    if rejected is not None:
        scores.masked_fill_(rejected, 0.0)
    return scores
