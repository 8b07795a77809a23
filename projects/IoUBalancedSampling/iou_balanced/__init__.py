"""IoU-balanced sampling (Pang et al., "Libra R-CNN: Towards Balanced Learning for Object Detection",
CVPR 2019, §3.1) for the negatives of Faster R-CNN's ROI heads, on detectron2.

The sampler (:mod:`iou_balanced.sampling`) is pure torch and always importable. The ROI heads
(:mod:`iou_balanced.roi_heads`) subclass detectron2's StandardROIHeads and are exported only when
detectron2 is installed; import ``iou_balanced.roi_heads`` directly to get an ImportError that says how
to install it.
"""
from d2imbalance._compat import detectron2_available

from .sampling import (
    BIN_RANGES,
    HYPERPARAMETERS,
    POSITIVE_SAMPLINGS,
    iou_balanced_scalars,
    iou_bins,
    matcher_negative_iou_top,
    negative_bin_counts,
    sample_instance_balanced_positives,
    sample_iou_balanced_negatives,
    subsample_labels_iou_balanced,
)

__all__ = [
    "BIN_RANGES",
    "HYPERPARAMETERS",
    "POSITIVE_SAMPLINGS",
    "iou_balanced_scalars",
    "iou_bins",
    "matcher_negative_iou_top",
    "negative_bin_counts",
    "sample_instance_balanced_positives",
    "sample_iou_balanced_negatives",
    "subsample_labels_iou_balanced",
]

if detectron2_available():  # roi_heads.py subclasses detectron2's StandardROIHeads
    from .roi_heads import IoUBalancedROIHeads

    __all__ += ["IoUBalancedROIHeads"]
