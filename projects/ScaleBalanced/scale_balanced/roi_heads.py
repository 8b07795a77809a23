"""Optional second-stage weighting for FasterRCNN-SCB (off by default).

§4.1 found that weighting the second stage of a two-stage detector hurt (RefineDet ODM: 80.0 -> 78.0
mAP), so the shipped Faster R-CNN configs keep detectron2's StandardROIHeads. These classes exist for
that ablation: the ROI heads record the proposal matcher's output and the sampled proposals, attach the
per-proposal weight W_i as the field ``scb_weights``, and the box predictor weights the losses of
positive proposals by it.
"""
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor

from .loss import weighted_box_loss, weighted_cross_entropy
from .matching import record_calls, record_matches
from .meta_arch import check_scb_args
from d2imbalance.analysis.hyperparameters import ROI_HEADS_SAMPLING

from .weights import HYPERPARAMETERS, batch_scale_balanced_weights

__all__ = ["ScaleBalancedROIHeads", "ScaleBalancedFastRCNNOutputLayers"]


@ROI_HEADS_REGISTRY.register()
class ScaleBalancedROIHeads(StandardROIHeads):
    """StandardROIHeads that attach ``scb_weights`` (S,) to each image's sampled proposals."""

    HYPERPARAMETERS = ROI_HEADS_SAMPLING + HYPERPARAMETERS  # the proposal sampling stays

    @configurable
    def __init__(
        self,
        *,
        weighting_form: str = "scale_balanced",
        scb_alpha: float = 1.0,
        scb_beta: float = 3.0,
        count_sampled: bool = False,
        **kwargs,
    ):
        """
        Args:
            weighting_form, scb_alpha, scb_beta: as :class:`RetinaNetSCB`.
            count_sampled: False: M_i counts the proposals the matcher made foreground for object i;
                True: only the foreground proposals kept by the 512-per-image sampling.
            kwargs: :class:`detectron2.modeling.StandardROIHeads` arguments; use
                :class:`ScaleBalancedFastRCNNOutputLayers` as ``box_predictor``, or the weights are
                computed and ignored.
        """
        super().__init__(**kwargs)
        check_scb_args(weighting_form, "num_pos")
        self.weighting_form = weighting_form
        self.scb_alpha = scb_alpha
        self.scb_beta = scb_beta
        self.count_sampled = count_sampled

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        with record_matches(self, "proposal_matcher") as matches, record_calls(self, "_sample_proposals") as samples:
            sampled = super().label_and_sample_proposals(proposals, targets)
        assert len(matches) == len(samples) == len(targets), (len(matches), len(samples), len(targets))
        areas = [t.gt_boxes.area() for t in targets]
        kw = dict(form=self.weighting_form, alpha=self.scb_alpha, beta=self.scb_beta)
        if self.count_sampled:
            # M over the sampled foreground proposals only.
            fg = [((c >= 0) & (c < self.num_classes)).to(torch.int8) for _, c in samples]
            weights, stats = batch_scale_balanced_weights(
                [m[0][s[0]] for m, s in zip(matches, samples)], fg, areas, **kw
            )
        else:
            # M over every proposal the matcher made foreground; then read the sampled ones' weights
            # (sampled foreground have matcher label 1 -> W_i, sampled background label 0 -> 1).
            all_weights, stats = batch_scale_balanced_weights(
                [m[0] for m in matches], [m[1] for m in matches], areas, **kw
            )
            weights = [w[s[0]] for w, s in zip(all_weights, samples)]
        get_event_storage().put_scalars(**{k.replace("scb/", "scb_roi/"): v for k, v in stats.items()})
        for inst, w in zip(sampled, weights):
            inst.scb_weights = w
        return sampled


class ScaleBalancedFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose losses weight each proposal by its ``scb_weights`` field."""

    @configurable
    def __init__(self, input_shape, *, weight_box_loss: bool = False, **kwargs):
        """
        Args:
            weight_box_loss: also weight the box loss of positive proposals (classification only
                by default, as in the authors' code).
            input_shape, kwargs: :class:`FastRCNNOutputLayers` arguments (softmax classification only).
        """
        super().__init__(input_shape, **kwargs)
        if self.use_sigmoid_ce or self.use_fed_loss:
            raise ValueError("ScaleBalancedFastRCNNOutputLayers supports the softmax classifier only; "
                             "set use_sigmoid_ce=False and use_fed_loss=False.")
        self.weight_box_loss = weight_box_loss

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, Tensor]:
        """FastRCNNOutputLayers.losses with per-proposal weights; RoI-mean normalisation kept.

        Args:
            predictions: (scores (P, K+1), proposal_deltas (P, 4 or 4K)).
            proposals: N Instances with proposal_boxes, gt_classes, gt_boxes and scb_weights (S_n,).
        """
        if not proposals or not all(p.has("scb_weights") for p in proposals):
            return super().losses(predictions, proposals)
        scores, proposal_deltas = predictions
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)  # (P,)
        weights = cat([p.scb_weights for p in proposals], dim=0).to(scores.dtype)  # (P,)
        _log_classification_stats(scores, gt_classes)
        num = max(gt_classes.numel(), 1)
        loss_cls = weighted_cross_entropy(scores, gt_classes, weights) / num
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals])
        if self.weight_box_loss:
            fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
            box_dim = proposal_boxes.shape[1]
            deltas = proposal_deltas[fg]
            if deltas.shape[1] != box_dim:  # class-specific regression: take the gt class's deltas
                deltas = deltas.view(-1, self.num_classes, box_dim)[torch.arange(len(deltas)), gt_classes[fg]]
            loss_box = weighted_box_loss(
                proposal_boxes[fg], deltas, gt_boxes[fg], weights[fg],
                box2box_transform=self.box2box_transform,
                loss_type=self.box_reg_loss_type, smooth_l1_beta=self.smooth_l1_beta,
            ) / num
        else:
            loss_box = self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes)
        losses = {"loss_cls": loss_cls, "loss_box_reg": loss_box}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}
