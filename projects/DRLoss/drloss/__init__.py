"""DR Loss (Qian, Chen, Li, Jin, "DR Loss: Improving Object Detection by Distributional Ranking",
CVPR 2020, arXiv:1907.10156) on detectron2's RetinaNet.

The loss arithmetic (:mod:`drloss.dr_loss`) is pure torch and always importable. RetinaNet-DR
(:mod:`drloss.meta_arch`) subclasses detectron2's RetinaNet and is exported only when detectron2 is
installed; import ``drloss.meta_arch`` directly to get an ImportError that says how to install it.
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

if detectron2_available():  # meta_arch.py subclasses detectron2's RetinaNet
    from .meta_arch import RetinaNetDRLoss

    __all__ += ["RetinaNetDRLoss"]
