"""DR Loss (Qian, Chen, Li, Jin, "DR Loss: Improving Object Detection by Distributional Ranking",
CVPR 2020, arXiv:1907.10156) on detectron2's RetinaNet and in Faster R-CNN's ROI head.

The loss arithmetic (:mod:`drloss.dr_loss`) is pure torch and always importable. RetinaNet-DR
(:mod:`drloss.meta_arch`) and the Faster R-CNN ROI head (:mod:`drloss.faster_rcnn`) subclass
detectron2's classes and are exported only when detectron2 is installed; import those modules
directly to get an ImportError that says how to install it.
"""
from d2imbalance._compat import detectron2_available

from .dr_loss import (
    CLASS_GROUPINGS,
    DEFAULT_NEG_LAMBDA,
    HYPERPARAMETERS,
    SCOPES,
    DRLossOutput,
    dr_loss,
    dr_statistics,
    sigmoid_dr_loss,
    smoothed_logistic,
)

__all__ = [
    "CLASS_GROUPINGS",
    "DEFAULT_NEG_LAMBDA",
    "HYPERPARAMETERS",
    "SCOPES",
    "DRLossOutput",
    "dr_loss",
    "dr_statistics",
    "sigmoid_dr_loss",
    "smoothed_logistic",
]

if detectron2_available():  # meta_arch.py / faster_rcnn.py subclass detectron2's RetinaNet / ROI heads
    from .faster_rcnn import DRFastRCNNOutputLayers, DRROIHeads
    from .meta_arch import RetinaNetDRLoss

    __all__ += ["DRFastRCNNOutputLayers", "DRROIHeads", "RetinaNetDRLoss"]
