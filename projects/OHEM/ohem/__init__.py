"""Online hard example mining (Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with
Online Hard Example Mining", CVPR 2016) for the ROI heads of Faster R-CNN, on detectron2.

The selection (:mod:`ohem.selection`) is pure torch and always importable. The ROI heads
(:mod:`ohem.roi_heads`) subclass detectron2's StandardROIHeads and are exported only when detectron2 is
installed; import ``ohem.roi_heads`` directly to get an ImportError that says how to install it.
"""
from d2imbalance._compat import detectron2_available

from .selection import (
    HYPERPARAMETERS,
    SELECTION_LOSSES,
    check_ohem_options,
    hard_example_ranking,
    ohem_scalars,
    select_hard_examples,
    selection_statistics,
    take_hardest,
)

__all__ = [
    "HYPERPARAMETERS",
    "SELECTION_LOSSES",
    "check_ohem_options",
    "hard_example_ranking",
    "ohem_scalars",
    "select_hard_examples",
    "selection_statistics",
    "take_hardest",
]


if detectron2_available():  # roi_heads.py subclasses detectron2's StandardROIHeads
    from .roi_heads import OHEMROIHeads, per_roi_losses

    __all__ += ["OHEMROIHeads", "per_roi_losses"]
