"""AP-loss (Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019).

The loss and its error-driven update (:mod:`aploss.ap_loss`) are pure torch and always importable. The
detectron2 detector (:class:`RetinaNetAPLoss`) is imported only when detectron2 is installed, so that
the pure-torch part can be used and tested without it.
"""
from d2imbalance._compat import detectron2_available

from .ap_loss import (
    DEFAULT_DELTA,
    HYPERPARAMETERS,
    APLossFunction,
    APLossOutput,
    APLossUpdate,
    anchor_class_labels,
    ap_loss,
    error_driven_update,
    piecewise_step,
)

__all__ = [
    "DEFAULT_DELTA",
    "HYPERPARAMETERS",
    "APLossFunction",
    "APLossOutput",
    "APLossUpdate",
    "anchor_class_labels",
    "ap_loss",
    "error_driven_update",
    "piecewise_step",
]

if detectron2_available():
    from .meta_arch import RetinaNetAPLoss

    __all__ += ["RetinaNetAPLoss"]
