"""RefineDet-SCB: RefineDet (d2imbalance.modeling.RefineDet) with the scale-balanced loss on its anchor
refinement module (ARM), its object detection module (ODM), or both (the paper's §4.1.1: weighting the
ARM took RefineDet320 from 80.0 to 80.4 mAP on VOC07; weighting the ODM too dropped it to 78.0).
Default: the ARM only.

Each module is weighted as SSD-SCB weights SSD (:mod:`.ssd`): W_i of Eq. 3 multiplies the
classification loss of object i's positive anchors (box loss unweighted unless ``weight_box_loss``),
negatives keep weight 1 and are mined on their unweighted loss, both losses divided by the module's
number of positives. M_i is counted on the module's own matching:

* ARM: the anchors matched to object i (SSD's rule: its best anchor, then IoU >= 0.5);
* ODM: the refined anchors matched to object i that the ODM actually trains on, i.e. after negative
  anchor filtering (a matched refined anchor whose ARM background score exceeds 0.99 takes no loss, so it
  does not count).
"""
import torch

from d2imbalance.modeling import RefineDet
from detectron2.structures import Boxes

from .meta_arch import check_scb_args
from .ssd import ssd_prior_weights
from .weights import HYPERPARAMETERS

__all__ = ["RefineDetSCB"]


class RefineDetSCB(RefineDet):
    """RefineDet whose ARM and / or ODM positives' classification loss is weighted by W_i (Eqs. 2-3)."""

    HYPERPARAMETERS = RefineDet.HYPERPARAMETERS + HYPERPARAMETERS  # mining and anchor filtering stay

    def __init__(
        self,
        *,
        weight_arm: bool = True,
        weight_odm: bool = False,
        weighting_form: str = "scale_balanced",
        scb_alpha: float = 1.0,
        scb_beta: float = 3.0,
        weight_box_loss: bool = False,
        **kwargs,
    ):
        """
        Args:
            weight_arm: weight the ARM's losses (§4.1.1's helpful setting; the default).
            weight_odm: weight the ODM's losses (§4.1.1: harmful on VOC).
            weighting_form, scb_alpha, scb_beta, weight_box_loss: as :class:`~.ssd.SSDSCB`; "const" gives
                vanilla RefineDet's losses.
            kwargs: :class:`d2imbalance.modeling.RefineDet` arguments.
        """
        super().__init__(**kwargs)
        check_scb_args(weighting_form, "num_pos")
        if not (weight_arm or weight_odm):
            raise ValueError(
                "weight_arm=False and weight_odm=False weights nothing: that is vanilla RefineDet "
                "(d2imbalance.modeling.RefineDet, configs/Baselines/refinedet*). Set weight_arm=True (§4.1.1's "
                "ARM-only setting) and / or weight_odm=True."
            )
        self.weight_arm = weight_arm
        self.weight_odm = weight_odm
        self.weighting_form = weighting_form
        self.scb_alpha = scb_alpha
        self.scb_beta = scb_beta
        self.weight_box_loss = weight_box_loss

    def forward_training(self, images, features, predictions, gt_instances):
        anchors = Boxes.cat(self.anchor_generator(features)).tensor
        arm, odm = self.targets(anchors, predictions, gt_instances)
        weights = {}
        if self.weight_arm:
            weights["arm"] = self._weights(arm.matched_idxs, gt_instances, "scb/arm")
        if self.weight_odm:
            trained = odm.matched_idxs.masked_fill(odm.ignore, -1)  # filtered anchors take no loss: no count
            weights["odm"] = self._weights(trained, gt_instances, "scb/odm")
        kwargs = {}
        for module, w in weights.items():
            kwargs[f"{module}_cls_weights"] = w
            if self.weight_box_loss:
                kwargs[f"{module}_box_weights"] = w
        return self.losses(arm, odm, **kwargs)

    def _weights(self, matched_idxs: torch.Tensor, gt_instances, log_prefix: str) -> torch.Tensor:
        return ssd_prior_weights(
            list(matched_idxs), gt_instances, form=self.weighting_form, alpha=self.scb_alpha,
            beta=self.scb_beta, log_prefix=log_prefix,
        )  # fmt: skip
