"""Sampling-Free (Chen et al., "Is Heuristic Sampling Necessary in Training Deep Object Detectors?",
arXiv:1909.04868): optimal bias initialisation, guided loss, class-adaptive thresholds.

The arithmetic (:mod:`sampling_free.core`) is pure torch and always importable. The detectron2 parts
(:class:`RetinaNetSamplingFree`; for Faster R-CNN :class:`SamplingFreeRPN`, :class:`SamplingFreeROIHeads`
and :class:`SamplingFreeOutputLayers`) are imported only when detectron2 is installed.
"""
from d2imbalance._compat import detectron2_available

from .core import (
    GUIDED_LOSS_MODES,
    HYPERPARAMETERS,
    OFFICIAL_RCNN_CLS_SCALE,
    OfficialGuidedLoss,
    class_adaptive_thresholds,
    guided_classification_loss,
    guided_ratio,
    initial_classification_loss,
    initial_softmax_classification_loss,
    optimal_prior,
    prior_to_bias,
    softmax_prior_to_bias,
    stage_guided_loss,
)

__all__ = [
    "GUIDED_LOSS_MODES",
    "HYPERPARAMETERS",
    "OFFICIAL_RCNN_CLS_SCALE",
    "OfficialGuidedLoss",
    "class_adaptive_thresholds",
    "guided_classification_loss",
    "guided_ratio",
    "initial_classification_loss",
    "initial_softmax_classification_loss",
    "optimal_prior",
    "prior_to_bias",
    "softmax_prior_to_bias",
    "stage_guided_loss",
]

if detectron2_available():
    from .fast_rcnn import SamplingFreeOutputLayers
    from .meta_arch import RetinaNetSamplingFree
    from .roi_heads import SamplingFreeROIHeads
    from .rpn import SamplingFreeRPN

    __all__ += ["RetinaNetSamplingFree", "SamplingFreeOutputLayers", "SamplingFreeROIHeads", "SamplingFreeRPN"]
