"""Residual Objectness (Chen et al., "Residual Objectness for Imbalance Reduction", arXiv:1908.09075).

The cascade arithmetic (:mod:`resobj.cascade`) is pure torch and always importable. The detectron2 parts
(heads, RetinaNet-ResObj, the ResObj RPN, YOLOv3-ResObj) are imported only when detectron2 is installed, so that the
pure-torch part can be used and tested without it; importing :mod:`resobj.rpn` also registers
``ResObjRPN`` / ``ResObjRPNHead`` in detectron2's registries.
"""
from d2imbalance._compat import detectron2_available

from .cascade import (
    HYPERPARAMETERS,
    CascadeOutput,
    cascade_statistics,
    final_objectness,
    fuse_scores,
    residual_objectness_cascade,
    summed_objectness_loss,
)

__all__ = [
    "HYPERPARAMETERS",
    "CascadeOutput",
    "cascade_statistics",
    "final_objectness",
    "fuse_scores",
    "residual_objectness_cascade",
    "summed_objectness_loss",
]

if detectron2_available():
    from .head import ResObjHead
    from .meta_arch import RetinaNetResObj
    from .rpn import ResObjRPN, ResObjRPNHead
    from .yolov3 import YOLOv3ResObj, YOLOv3ResObjHead

    __all__ += ["ResObjHead", "RetinaNetResObj", "ResObjRPN", "ResObjRPNHead", "YOLOv3ResObj", "YOLOv3ResObjHead"]
