"""PISA's Importance-based Sample Reweighting (ISR) and Classification-Aware Regression Loss (CARL)
(Cao, Chen, Loy, Lin, "Prime Sample Attention in Object Detection", CVPR 2020) for the ROI heads of
Faster R-CNN, on detectron2.

The ranks, weights and CARL (:mod:`pisa.isr`, :mod:`pisa.carl`) are pure torch and always importable.
The ROI heads and their box predictor (:mod:`pisa.roi_heads`) subclass detectron2's and are exported
only when detectron2 is installed; import ``pisa.roi_heads`` directly to get an ImportError that says
how to install it.
"""
from d2imbalance._compat import detectron2_available

from .carl import CARL_HYPERPARAMETERS, carl_loss, carl_weights, check_carl_options
from .isr import (
    HYPERPARAMETERS,
    ISR_HYPERPARAMETERS,
    POSITIVE_IOUS,
    aligned_iou,
    check_isr_options,
    group_extremes,
    hierarchical_local_rank,
    importance_weights,
    isr_negative_weights,
    isr_positive_weights,
    nms_clusters,
    nms_survivors,
    rank_importance,
    renormalize,
    score_hlr_sample,
    weight_scalars,
)

__all__ = [
    "CARL_HYPERPARAMETERS",
    "HYPERPARAMETERS",
    "ISR_HYPERPARAMETERS",
    "POSITIVE_IOUS",
    "aligned_iou",
    "carl_loss",
    "carl_weights",
    "check_carl_options",
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

if detectron2_available():  # roi_heads.py subclasses detectron2's StandardROIHeads and FastRCNNOutputLayers
    from .roi_heads import NEGATIVE_SAMPLINGS, ISRFastRCNNOutputLayers, ISRROIHeads, PISAROIHeads

    __all__ += ["ISRFastRCNNOutputLayers", "ISRROIHeads", "NEGATIVE_SAMPLINGS", "PISAROIHeads"]
