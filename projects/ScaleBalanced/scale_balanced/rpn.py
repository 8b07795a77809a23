"""FasterRCNN-SCB, first stage: detectron2's RPN with scale-balanced weights on its positive anchors.

§4.1: on a two-stage detector the weights helped the first stage (RefineDet's ARM, 80.0 -> 80.4 mAP)
and hurt the second (ODM, 78.0). So the RPN is weighted (this module) and the ROI heads are not, unless
:class:`~scale_balanced.roi_heads.ScaleBalancedROIHeads` is selected.
"""
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor

from .loss import weighted_bce_loss
from .matching import record_matches
from .meta_arch import check_scb_args, dense_box_loss, gt_areas
from d2imbalance.analysis.hyperparameters import RPN_SAMPLING

from .weights import HYPERPARAMETERS, batch_scale_balanced_weights

__all__ = ["ScaleBalancedRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class ScaleBalancedRPN(RPN):
    """RPN whose objectness (and optionally box) losses of positive anchors are weighted by W_i."""

    HYPERPARAMETERS = RPN_SAMPLING + HYPERPARAMETERS  # the RPN's anchor sampling stays

    @configurable
    def __init__(
        self,
        *,
        weighting_form: str = "scale_balanced",
        scb_alpha: float = 1.0,
        scb_beta: float = 3.0,
        weight_box_loss: bool = False,
        normalize_by: str = "num_sampled",
        count_sampled: bool = False,
        **kwargs,
    ):
        """
        Args:
            weighting_form, scb_alpha, scb_beta, weight_box_loss: as :class:`RetinaNetSCB`.
            normalize_by: "num_sampled" (RPN's own normaliser: batch_size_per_image x #images) or
                "weight_sum" (Σ of the weights of the sampled anchors: W on positives, 1 on negatives)
                for the weighted losses; an unweighted box loss keeps "num_sampled".
            count_sampled: False: M_i counts the anchors the matcher made positive for object i (the
                matching imbalance of the paper); True: only those kept by RPN's random 1:1 subsampling.
            kwargs: :class:`detectron2.modeling.RPN` arguments.
        """
        super().__init__(**kwargs)
        check_scb_args(weighting_form, normalize_by, ("num_sampled", "weight_sum"))
        self.weighting_form = weighting_form
        self.scb_alpha = scb_alpha
        self.scb_beta = scb_beta
        self.weight_box_loss = weight_box_loss
        self.normalize_by = normalize_by
        self.count_sampled = count_sampled

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """``RPN.label_and_sample_anchors``; also computes the (N, R) per-anchor weights that the
        next :meth:`losses` call uses (RPN.forward calls the two back to back)."""
        with record_matches(self) as matches:
            gt_labels, gt_boxes = super().label_and_sample_anchors(anchors, gt_instances)
        assert len(matches) == len(gt_instances), f"{len(matches)} matcher calls for {len(gt_instances)} images"
        weights, stats = batch_scale_balanced_weights(
            [m[0].to(lab.device) for m, lab in zip(matches, gt_labels)],
            gt_labels,
            gt_areas(gt_instances),
            form=self.weighting_form,
            alpha=self.scb_alpha,
            beta=self.scb_beta,
            count_labels=None if self.count_sampled else [m[1].to(lab.device) for m, lab in zip(matches, gt_labels)],
        )
        get_event_storage().put_scalars(**{k.replace("scb/", "scb_rpn/"): v for k, v in stats.items()})
        self._scb_weights = torch.stack(weights)
        return gt_labels, gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
    ) -> Dict[str, Tensor]:
        """RPN's losses with the weights of the preceding :meth:`label_and_sample_anchors` call
        (RPN's own losses when there is none, e.g. when called directly).

        Args: as :meth:`RPN.losses` (pred_objectness_logits: L tensors (N, Hi*Wi*A)).
        """
        weights = self.__dict__.pop("_scb_weights", None)  # consumed: never reused by a later call
        if weights is None:
            return super().losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = gt_labels == 1
        valid_mask = gt_labels >= 0
        storage = get_event_storage()
        storage.put_scalar("rpn/num_pos_anchors", pos_mask.sum().item() / num_images)
        storage.put_scalar("rpn/num_neg_anchors", (gt_labels == 0).sum().item() / num_images)

        objectness_loss = weighted_bce_loss(
            cat(pred_objectness_logits, dim=1)[valid_mask],
            gt_labels[valid_mask].to(torch.float32),
            weights[valid_mask],
        )
        localization_loss = dense_box_loss(
            self, anchors, pred_anchor_deltas, gt_boxes, pos_mask, weights[pos_mask] if self.weight_box_loss else None
        )
        num_sampled = self.batch_size_per_image * num_images  # RPN's own normaliser
        if self.normalize_by == "weight_sum":
            normalizer = max(weights[valid_mask].sum().item(), 1.0)
        else:
            normalizer = num_sampled
        loc_normalizer = normalizer if self.weight_box_loss else num_sampled  # an unweighted loss keeps RPN's
        losses = {"loss_rpn_cls": objectness_loss / normalizer, "loss_rpn_loc": localization_loss / loc_normalizer}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}
