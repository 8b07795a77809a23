"""The hyper-parameters each imbalance solution introduces, declared next to its code.

The review's Table 1 (papers/001, "Parameters") counts the hyper-parameters a solution adds to its
detector. Here every solution declares them once, as ``HYPERPARAMETERS`` (a tuple of
:class:`Hyperparameter`) on its model class, and the comparison tool counts that declaration instead
of a number typed into a table. The detectors of detectron2, which cannot carry the attribute, are
declared in :data:`DETECTRON2_DECLARATIONS`.

What a declaration lists: every hyper-parameter of the detector's foreground-background imbalance
handling *with* the method, so what the method keeps from its detector is listed again and what it
replaces is not (RetinaNet-SCB keeps the focal loss: alpha, gamma, plus the SCB's alpha and beta;
RetinaNet-ResObj drops it: T only). As in the review, anchor-matching thresholds, loss weights, priors
of the biased initialisation and test thresholds are not counted.

Two-stage detectors (:data:`COMPOSITE_DETECTORS`: detectron2's GeneralizedRCNN) handle the imbalance
in their parts. Unless the meta-architecture class itself declares, the model's hyper-parameters are
its proposal generator's declaration followed by its ROI heads' declaration, each name prefixed with
the part's config key (``"proposal_generator.head.num_steps"``). A part the method replaces brings the
method's declaration (resobj.ResObjRPN: T); a part it keeps brings detectron2's (StandardROIHeads:
its 512 / 0.25 sampling). detectron2's Faster R-CNN thus counts 4: the RPN's sampling and the ROI
heads' (the review's Table 1 counts 2 for "biased sampling", the pair of values, not per stage).

Pure Python; nothing here imports detectron2.
"""
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = [
    "Hyperparameter",
    "FOCAL_LOSS",
    "RPN_SAMPLING",
    "ROI_HEADS_SAMPLING",
    "DETECTRON2_DECLARATIONS",
    "COMPOSITE_DETECTORS",
    "declared_hyperparameters",
    "qualified_name",
]


@dataclass(frozen=True)
class Hyperparameter:
    """One tunable value a solution introduces.

    Attributes:
        name: the config key relative to the declaring class's node (e.g. "ghm_bins" for
            ``model.ghm_bins``, "head.num_steps"; for a proposal generator, "batch_size_per_image" is
            ``model.proposal_generator.batch_size_per_image``).
        default: the value the paper recommends, which the configs use.
        meaning: one line saying what it sets, with the paper's equation or table.
    """

    name: str
    default: Any
    meaning: str


#: detectron2's RetinaNet: the focal loss (Lin et al., Eq. 5).
FOCAL_LOSS: Tuple[Hyperparameter, ...] = (
    Hyperparameter("focal_loss_alpha", 0.25, "focal loss weight of the positives (Lin et al., Eq. 5)"),
    Hyperparameter("focal_loss_gamma", 2.0, "focal loss focusing parameter (Lin et al., Eq. 5)"),
)
#: detectron2's RPN: its biased sampling of anchors (Ren et al., §3.1.3: 256 per image, up to 1:1).
RPN_SAMPLING: Tuple[Hyperparameter, ...] = (
    Hyperparameter("batch_size_per_image", 256, "anchors sampled per image for the RPN losses"),
    Hyperparameter("positive_fraction", 0.5, "at most this fraction of the sampled anchors is foreground"),
)
#: detectron2's StandardROIHeads: its biased sampling of proposals (512 per image, 25% foreground).
ROI_HEADS_SAMPLING: Tuple[Hyperparameter, ...] = (
    Hyperparameter("batch_size_per_image", 512, "ROIs sampled per image"),
    Hyperparameter("positive_fraction", 0.25, "fraction of foreground ROIs in the sample"),
)

#: detectron2's own modules, by fully qualified class name (see :func:`qualified_name`).
DETECTRON2_DECLARATIONS: Dict[str, Tuple[Hyperparameter, ...]] = {
    "detectron2.modeling.meta_arch.retinanet.RetinaNet": FOCAL_LOSS,
    "detectron2.modeling.proposal_generator.rpn.RPN": RPN_SAMPLING,
    "detectron2.modeling.roi_heads.roi_heads.StandardROIHeads": ROI_HEADS_SAMPLING,
}

#: Meta-architectures whose imbalance handling lives in their parts: class name -> the config keys of
#: the parts, in the order their declarations are concatenated.
COMPOSITE_DETECTORS: Dict[str, Tuple[str, ...]] = {
    "detectron2.modeling.meta_arch.rcnn.GeneralizedRCNN": ("proposal_generator", "roi_heads"),
}


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, e.g. "detectron2.modeling.meta_arch.retinanet.RetinaNet"."""
    return f"{cls.__module__}.{cls.__qualname__}"


def declared_hyperparameters(
    model_class: type, parts: Optional[Mapping[str, Optional[type]]] = None
) -> Tuple[Hyperparameter, ...]:
    """The hyper-parameters ``model_class`` declares.

    Searched along the class's bases, nearest first: a class's own ``HYPERPARAMETERS``, detectron2's
    declaration of it (:data:`DETECTRON2_DECLARATIONS`), or, for a composite detector
    (:data:`COMPOSITE_DETECTORS`), the declarations of its parts concatenated, names prefixed by the
    part's key (see the module docstring).

    Args:
        model_class: the model's class (a config's ``model._target_``), or a part's class.
        parts: for a composite detector, the class of each part by its config key
            (``{"proposal_generator": RPN, "roi_heads": StandardROIHeads}``); None for a part the
            model does not have (a Fast R-CNN without proposal generator), which adds nothing.

    Raises:
        ValueError: neither the class nor any base declares them (the message says where to add
            them), or a composite detector's ``parts`` lack one of its keys.
    """
    for cls in model_class.__mro__:
        if "HYPERPARAMETERS" in vars(cls):
            return tuple(vars(cls)["HYPERPARAMETERS"])
        name = qualified_name(cls)
        if name in DETECTRON2_DECLARATIONS:
            return DETECTRON2_DECLARATIONS[name]
        if name in COMPOSITE_DETECTORS:
            keys = COMPOSITE_DETECTORS[name]
            missing = [k for k in keys if k not in (parts or {})]
            if missing:
                raise ValueError(
                    f"{qualified_name(model_class)} is a {cls.__qualname__}, whose hyper-parameters are those of "
                    f"its parts {list(keys)}; pass parts={{key: class}} with {missing} (None for a part the "
                    "model does not have)."
                )
            return tuple(
                Hyperparameter(f"{key}.{h.name}", h.default, h.meaning)
                for key in keys
                if parts[key] is not None
                for h in declared_hyperparameters(parts[key])
            )
    raise ValueError(
        f"{qualified_name(model_class)} declares no hyper-parameters; give it a class "
        "attribute HYPERPARAMETERS = (Hyperparameter(...), ...) (d2imbalance.analysis.hyperparameters), "
        "an empty tuple if the method introduces none."
    )
