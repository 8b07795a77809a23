"""Gradient Harmonizing Mechanism (Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019,
arXiv:1811.05181): GHM-C and GHM-R on detectron2's RetinaNet. See projects/GHM/README.md.

The loss arithmetic (:mod:`ghm.ghm_loss`) is pure torch and always importable. ``RetinaNetGHM`` needs
detectron2 and is imported only when it is installed.
"""
from d2imbalance._compat import detectron2_available

from .ghm_loss import (
    HYPERPARAMETERS,
    MODES,
    DensityOutput,
    GradientDensity,
    asl1,
    asl1_gradient_norm,
    bin_indices,
    density_summary,
    ghm_c_loss,
    ghm_r_loss,
)

__all__ = [
    "HYPERPARAMETERS",
    "MODES",
    "DensityOutput",
    "GradientDensity",
    "asl1",
    "asl1_gradient_norm",
    "bin_indices",
    "density_summary",
    "ghm_c_loss",
    "ghm_r_loss",
]

if detectron2_available():
    from .meta_arch import BOX_LOSSES, RetinaNetGHM

    __all__ += ["BOX_LOSSES", "RetinaNetGHM"]
