"""Scale-balanced loss (Shuang et al., Pattern Recognition 2021) for the paper's detectors (SSD, FSSD and
RefineDet) and detectron2's RetinaNet and Faster R-CNN. See projects/ScaleBalanced/README.md.

The pure-torch weighting code (:mod:`.weights`, :mod:`.loss`, :mod:`.matching`) imports without
detectron2. The detectors need it, so they are imported only when detectron2 is installed; importing
them also registers ``RetinaNetSCB`` in META_ARCH_REGISTRY, ``ScaleBalancedRPN`` in
PROPOSAL_GENERATOR_REGISTRY and ``ScaleBalancedROIHeads`` in ROI_HEADS_REGISTRY (yacs configs).
"""
from d2imbalance._compat import detectron2_available

from .weights import (
    HYPERPARAMETERS,
    WEIGHTING_FORMS,
    anchor_weights,
    batch_scale_balanced_weights,
    match_counts,
    scale_balanced_weights,
    weight_from_count,
)

__all__ = [
    "HYPERPARAMETERS",
    "WEIGHTING_FORMS",
    "anchor_weights",
    "batch_scale_balanced_weights",
    "match_counts",
    "scale_balanced_weights",
    "weight_from_count",
]

if detectron2_available():
    from d2imbalance._compat import ensure_pkg_resources

    ensure_pkg_resources()
    from .meta_arch import RetinaNetSCB
    from .roi_heads import ScaleBalancedFastRCNNOutputLayers, ScaleBalancedROIHeads
    from .refinedet import RefineDetSCB
    from .rpn import ScaleBalancedRPN
    from .ssd import SSDSCB

    __all__ += [
        "RetinaNetSCB",
        "ScaleBalancedRPN",
        "ScaleBalancedROIHeads",
        "ScaleBalancedFastRCNNOutputLayers",
        "SSDSCB",
        "RefineDetSCB",
    ]
