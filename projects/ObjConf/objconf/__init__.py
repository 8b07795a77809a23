"""RetinaNet-Conf and IoU-aware RetinaNet (Wu et al., "Improvement of Classification in One-Stage
Detector", arXiv 2011.10465).

The pure-torch parts (score fusion, confidence losses, aligned IoU) import without detectron2; the
head and meta-architecture are exported only when detectron2 is installed, because they subclass
detectron2's RetinaNet. Import ``objconf.head`` / ``objconf.meta_arch`` directly to get an ImportError
that says how to install it.
"""

from d2imbalance._compat import detectron2_available

from .conf_loss import CONF_LOSSES, aligned_box_iou, object_confidence_loss
from .fusion import FUSION_METHODS, HYPERPARAMETERS, fuse_logits_, fuse_scores

__all__ = [
    "CONF_LOSSES",
    "FUSION_METHODS",
    "HYPERPARAMETERS",
    "aligned_box_iou",
    "fuse_logits_",
    "fuse_scores",
    "object_confidence_loss",
]

if detectron2_available():  # head.py and meta_arch.py subclass detectron2 classes
    from .head import IoUAwareRetinaNetHead, RetinaNetConfHead
    from .meta_arch import RetinaNetConf

    __all__ += ["IoUAwareRetinaNetHead", "RetinaNetConf", "RetinaNetConfHead"]
