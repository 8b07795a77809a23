"""Faster R-CNN's ROI heads with PISA's Importance-based Sample Reweighting (ISR) and, as a switch, its
Classification-Aware Regression Loss (CARL) (Cao et al., "Prime Sample Attention in Object Detection").

- :class:`ISRROIHeads` records, while detectron2 matches and samples, each sampled RoI's IoU with its
  ground truth and the index of that ground truth (fields ``gt_iou`` and ``gt_index``). With
  ``negative_sampling="score_hlr"`` it draws the negatives as the authors' ``ScoreHLRSampler`` does.
- :class:`ISRFastRCNNOutputLayers` computes the losses: the classification loss of every sampled RoI
  weighted by ISR-P (positives) and ISR-N (negatives), detectron2's box loss, and CARL when on.
- :class:`PISAROIHeads` is ISRROIHeads with CARL required, so that its hyper-parameter declaration
  counts CARL's k and b.
Inference is detectron2's, untouched.
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from d2imbalance._compat import require_detectron2

from .carl import CARL_HYPERPARAMETERS, carl_loss, check_carl_options
from .isr import (
    HYPERPARAMETERS,
    aligned_iou,
    check_isr_options,
    isr_negative_weights,
    isr_positive_weights,
    score_hlr_sample,
    weight_scalars,
)

require_detectron2("pisa.roi_heads")
from detectron2.config import configurable  # noqa: E402
from detectron2.layers import cat  # noqa: E402
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads  # noqa: E402
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals  # noqa: E402
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["ISRFastRCNNOutputLayers", "ISRROIHeads", "NEGATIVE_SAMPLINGS", "PISAROIHeads"]

logger = logging.getLogger(__name__)

#: ``"random"``: detectron2's random negatives, reweighted by ISR-N in the loss (the paper's reweighting);
#: ``"score_hlr"``: negatives drawn by Score-HLR, with its weights (the authors' ``ScoreHLRSampler``).
NEGATIVE_SAMPLINGS = ("random", "score_hlr")


class ISRFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose classification loss is reweighted by ISR, plus CARL when on.

    The losses read the fields ``gt_iou`` and ``gt_index`` that :class:`ISRROIHeads` records, and
    ``isr_negative_weight`` when the heads drew the negatives by Score-HLR. ``loss_cls`` stays the mean
    over the sampled RoIs, of w · CE; the weights of the positives and of the negatives are each rescaled
    so that their weighted sum equals the unweighted one. EventStorage gets ``isr/*``.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        positive_gamma: float = 2.0,
        positive_beta: float = 0.0,
        negative_gamma: float = 0.5,
        negative_beta: float = 0.0,
        positive_iou: str = "proposal",
        positive_nms_threshold: Optional[float] = None,
        negative_nms_threshold: float = 0.5,
        carl: bool = False,
        carl_k: float = 1.0,
        carl_bias: float = 0.2,
        carl_detach_score: bool = False,
        **kwargs,
    ):
        """
        Args:
            positive_gamma, positive_beta: γ and β of ISR-P, w = ((1 - β) u + β)^γ (2 and 0, the
                authors' config).
            negative_gamma, negative_beta: γ and β of ISR-N (0.5 and 0, the authors' config).
            positive_iou: "proposal": rank the positives by the RoI's IoU with its ground truth, from
                the matching; "regressed": by the IoU of the box regressed from it (authors' code).
            positive_nms_threshold: None (the paper's IoU-HLR, which groups by object and ranks by IoU,
                and the authors' code): no NMS among the positives. An IoU: inside each object, the
                positives a greedy NMS (by IoU with the object) keeps come before the ones it suppresses
                (an option of ours; Score-HLR clusters the negatives this way).
            negative_nms_threshold: the IoU of the NMS that clusters the negatives for Score-HLR.
            carl: add CARL, L_carl = Σ c_i L_reg,i / R, as ``loss_carl``.
            carl_k, carl_bias: CARL's k and b, c ∝ (b + (1 - b) s)^k (1 and 0.2, the authors' config).
            carl_detach_score: no gradient from CARL to the classifier (neither the paper's nor the
                authors' CARL, whose point is that gradient).
            input_shape, kwargs: :class:`FastRCNNOutputLayers` arguments (softmax classifier only).
        """
        super().__init__(input_shape, **kwargs)
        if self.use_sigmoid_ce or self.use_fed_loss:
            raise ValueError(
                f"use_sigmoid_ce={self.use_sigmoid_ce}, use_fed_loss={self.use_fed_loss}: ISR ranks negatives by "
                "their softmax foreground probability; set use_sigmoid_ce=False and use_fed_loss=False."
            )
        check_isr_options(
            positive_gamma=positive_gamma, positive_beta=positive_beta, negative_gamma=negative_gamma,
            negative_beta=negative_beta, positive_iou=positive_iou, positive_nms_threshold=positive_nms_threshold,
            negative_nms_threshold=negative_nms_threshold,
        )  # fmt: skip
        check_carl_options(k=carl_k, bias=carl_bias)
        if carl and self.box_reg_loss_type != "smooth_l1":
            raise ValueError(
                f"carl=True weights the per-RoI smooth-L1 box loss; box_reg_loss_type={self.box_reg_loss_type!r} is "
                "not supported: use 'smooth_l1' (smooth_l1_beta=0 is detectron2's L1) or carl=False."
            )
        self.positive_gamma = positive_gamma
        self.positive_beta = positive_beta
        self.negative_gamma = negative_gamma
        self.negative_beta = negative_beta
        self.positive_iou = positive_iou
        self.positive_nms_threshold = positive_nms_threshold
        self.negative_nms_threshold = negative_nms_threshold
        self.carl = carl
        self.carl_k = carl_k
        self.carl_bias = carl_bias
        self.carl_detach_score = carl_detach_score

    def _class_deltas(self, deltas: Tensor, classes: Tensor) -> Tensor:
        """(R, 4) deltas of ``classes`` (R,) from (R, 4) or (R, 4K) predictions."""
        if deltas.shape[1] == 4:
            return deltas
        return deltas.view(-1, self.num_classes, 4)[torch.arange(len(deltas), device=deltas.device), classes]

    @torch.no_grad()
    def foreground_scores_and_boxes(self, scores: Tensor, deltas: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """The highest foreground probability of each RoI and the box regressed for that class.

        Args:
            scores: (R, K+1) logits. deltas: (R, 4) or (R, 4K). boxes: (R, 4) the RoIs.

        Returns:
            (R,) probabilities and (R, 4) boxes.
        """
        best, best_class = F.softmax(scores, dim=1)[:, :-1].max(dim=1)
        return best, self.box2box_transform.apply_deltas(self._class_deltas(deltas, best_class), boxes)

    @torch.no_grad()
    def isr_weights(
        self,
        scores: Tensor,
        deltas: Tensor,
        ce: Tensor,
        proposals: List[Instances],
        gt_classes: Tensor,
        proposal_boxes: Tensor,
        gt_boxes: Tensor,
    ) -> Tuple[Tensor, Dict[str, float]]:
        """(R,) weights of the sampled RoIs' classification losses and the training signals.

        Args:
            scores: (R, K+1), deltas: (R, 4 or 4K) the predictions. ce: (R,) the unweighted losses.
            proposals: the sampled RoIs per image, with ``gt_iou`` and ``gt_index``.
            gt_classes, proposal_boxes, gt_boxes: (R,), (R, 4), (R, 4) concatenated over the images.
        """
        for p in proposals:
            if not (p.has("gt_iou") and p.has("gt_index")):
                raise ValueError(
                    "ISRFastRCNNOutputLayers needs the fields gt_iou and gt_index that pisa.ISRROIHeads records "
                    "while matching; use pisa.ISRROIHeads (or PISAROIHeads) as model.roi_heads._target_."
                )
        images = cat([torch.full((len(p),), i, dtype=torch.long, device=scores.device) for i, p in enumerate(proposals)])
        weights = torch.ones_like(ce)
        scalars: Dict[str, float] = {}
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        bg = gt_classes == self.num_classes
        if fg.any():
            gt_index = cat([p.gt_index for p in proposals])[fg]
            objects = images[fg] * (int(gt_index.max()) + 1) + gt_index
            classes = gt_classes[fg]
            if self.positive_iou == "proposal":
                ious, boxes = cat([p.gt_iou for p in proposals])[fg], proposal_boxes[fg]
            else:
                boxes = self.box2box_transform.apply_deltas(self._class_deltas(deltas[fg], classes), proposal_boxes[fg])
                ious = aligned_iou(boxes, gt_boxes[fg])
            out = isr_positive_weights(
                ious, objects, classes, ce[fg], gamma=self.positive_gamma, beta=self.positive_beta, boxes=boxes,
                nms_threshold=self.positive_nms_threshold,
            )  # fmt: skip
            weights[fg] = out["weights"].to(weights.dtype)
            scalars.update(weight_scalars("pos", out["weights"], out["local"], objects))
            scalars.update(pos_iou_mean=float(ious.mean()), pos_renorm=float(out["ratio"]))
        if all(p.has("isr_negative_weight") for p in proposals):  # drawn by Score-HLR, weighted there
            weights[bg] = cat([p.isr_negative_weight for p in proposals])[bg].to(weights.dtype)
            if bg.any():
                w = weights[bg]
                scalars.update(neg_weight_mean=float(w.mean()), neg_weight_std=float(w.std(unbiased=False)))
        elif bg.any():
            best, boxes = self.foreground_scores_and_boxes(scores[bg], deltas[bg], proposal_boxes[bg])
            out = isr_negative_weights(
                best, boxes, images[bg], ce[bg], gamma=self.negative_gamma, beta=self.negative_beta,
                nms_threshold=self.negative_nms_threshold,
            )  # fmt: skip
            weights[bg] = out["weights"].to(weights.dtype)
            scalars.update(weight_scalars("neg", out["weights"], out["local"], out["cluster"]))
            scalars.update(
                neg_score_mean=float(best.mean()), neg_renorm=float(out["ratio"]),
                neg_cluster_fraction=float((out["local"] == 0).float().mean()),
            )  # fmt: skip
        return weights, scalars

    def carl_loss(self, scores: Tensor, deltas: Tensor, gt_classes: Tensor, proposal_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """CARL over the positives, divided by the number of sampled RoIs as detectron2's box loss is."""
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        classes = gt_classes[fg]
        score = F.softmax(scores[fg], dim=1)[torch.arange(len(classes), device=scores.device), classes]
        target = self.box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])
        pred = self._class_deltas(deltas[fg], classes)
        beta = self.smooth_l1_beta
        diff = (pred - target).abs()
        per_coord = diff if beta < 1e-5 else torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
        return carl_loss(
            score, per_coord.sum(dim=1), gt_classes.numel(), k=self.carl_k, bias=self.carl_bias,
            detach_score=self.carl_detach_score,
        )  # fmt: skip

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, Tensor]:
        """
        Args:
            predictions: (scores (R, K+1), proposal_deltas (R, 4 or 4K)).
            proposals: the sampled RoIs per image (proposal_boxes, gt_classes, gt_boxes, gt_iou, gt_index).

        Returns:
            ``loss_cls`` (ISR-weighted), ``loss_box_reg`` (detectron2's) and, with CARL, ``loss_carl``.
        """
        scores, deltas = predictions
        if not proposals:
            return super().losses(predictions, proposals)
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        _log_classification_stats(scores, gt_classes)
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        ce = F.cross_entropy(scores, gt_classes, reduction="none")
        weights, scalars = self.isr_weights(
            scores.detach(), deltas.detach(), ce.detach(), proposals, gt_classes, proposal_boxes, gt_boxes
        )
        num = max(gt_classes.numel(), 1)
        losses = {
            "loss_cls": (weights * ce).sum() / num,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes),
        }
        if self.carl:
            losses["loss_carl"] = self.carl_loss(scores, deltas, gt_classes, proposal_boxes, gt_boxes)
        if scalars:
            get_event_storage().put_scalars(**{f"isr/{k}": v for k, v in scalars.items()})
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}


class _IoURecorder:
    """Wraps the proposal matcher while ``label_and_sample_proposals`` runs: keeps each proposal's IoU
    with the ground truth it is matched to (the column maxima of the match quality matrix, which the
    matcher computes and discards), then matches as the matcher does. Attributes are forwarded."""

    def __init__(self, matcher, ious: List[Tensor]):
        self.matcher = matcher
        self.ious = ious

    def __call__(self, match_quality_matrix: Tensor):
        if match_quality_matrix.shape[0] == 0:  # no ground truth: every proposal has IoU 0
            self.ious.append(match_quality_matrix.new_zeros(match_quality_matrix.shape[1]))
        else:
            self.ious.append(match_quality_matrix.max(dim=0).values)
        return self.matcher(match_quality_matrix)

    def __getattr__(self, name):
        return getattr(self.matcher, name)


@ROI_HEADS_REGISTRY.register()
class ISRROIHeads(StandardROIHeads):
    """StandardROIHeads for ISR: matching and sampling are detectron2's (or, with
    ``negative_sampling="score_hlr"``, the negatives are drawn by Score-HLR); each sampled RoI carries
    ``gt_iou`` (its IoU with its ground truth, 0 in an image without objects) and ``gt_index`` (that
    ground truth's index in the image) to :class:`ISRFastRCNNOutputLayers`, which must be the box
    predictor. Inference is StandardROIHeads'.
    """

    HYPERPARAMETERS = HYPERPARAMETERS  # 512 / 0.25 sampling kept, γ and β for positives and negatives

    @configurable
    def __init__(self, *, negative_sampling: str = "random", negative_score_threshold: float = 0.05, **kwargs):
        """
        Args:
            negative_sampling: "random": detectron2's negatives, reweighted by ISR-N (the paper's
                reweighting); "score_hlr": each image's negatives drawn by Score-HLR after an extra
                forward pass of the box head over all of them, weighted as the draw says (the
                authors' ``ScoreHLRSampler``).
            negative_score_threshold: with "score_hlr", negatives whose highest foreground probability
                is at most this are ranked last and drawn at random (0.05, the authors' sampler).
            kwargs: :class:`StandardROIHeads` arguments; ``box_predictor`` an ISRFastRCNNOutputLayers.
        """
        super().__init__(**kwargs)
        if not isinstance(self.box_predictor, ISRFastRCNNOutputLayers):
            raise ValueError(
                f"box_predictor is a {type(self.box_predictor).__name__}; ISR's losses are computed by "
                "pisa.ISRFastRCNNOutputLayers: set model.roi_heads.box_predictor._target_ to it."
            )
        if negative_sampling not in NEGATIVE_SAMPLINGS:
            raise ValueError(
                f"negative_sampling={negative_sampling!r} is not one of {NEGATIVE_SAMPLINGS}: 'random' (random "
                "negatives reweighted, the paper) or 'score_hlr' (the authors' ScoreHLRSampler)."
            )
        if isinstance(negative_score_threshold, bool) or not 0.0 <= negative_score_threshold < 1.0:
            raise ValueError(
                f"negative_score_threshold={negative_score_threshold!r} must be in [0, 1) (the authors' sampler "
                "uses 0.05)."
            )
        if self.box_predictor.carl and type(self) is ISRROIHeads:
            logger.warning(
                "box_predictor.carl=True under ISRROIHeads: training adds CARL, but the hyper-parameter "
                "declaration leaves out its k and b; use pisa.PISAROIHeads for ISR + CARL."
            )
        self.negative_sampling = negative_sampling
        self.negative_score_threshold = negative_score_threshold
        self._features: Optional[Dict[str, Tensor]] = None
        self._ious: List[Tensor] = []
        self._boxes: List[Tensor] = []
        self._records: List[Tuple[Tensor, Tensor, Optional[Tensor]]] = []
        self._valid: List[Tuple[int, int]] = []

    def forward(self, images, features, proposals, targets=None):
        """:meth:`StandardROIHeads.forward`; in training with Score-HLR negatives, the features are kept
        for the sampler's extra forward pass of the box head."""
        self._features = features if (self.training and self.negative_sampling == "score_hlr") else None
        try:
            return super().forward(images, features, proposals, targets)
        finally:
            self._features = None

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """:meth:`ROIHeads.label_and_sample_proposals`, recording each sampled RoI's IoU with its ground
        truth and that ground truth's index as the fields ``gt_iou`` and ``gt_index`` (and, with
        Score-HLR negatives, their weights as ``isr_negative_weight``)."""
        if self.proposal_append_gt:  # done here, so that the sampler sees the boxes the matcher sees
            proposals = add_ground_truth_to_proposals(targets, proposals)
        self._ious, self._records, self._valid = [], [], []
        self._boxes = [p.proposal_boxes.tensor for p in proposals]
        matcher, append = self.proposal_matcher, self.proposal_append_gt
        self.proposal_matcher, self.proposal_append_gt = _IoURecorder(matcher, self._ious), False
        try:
            sampled = super().label_and_sample_proposals(proposals, targets)
        finally:
            self.proposal_matcher, self.proposal_append_gt = matcher, append
        assert len(self._records) == len(sampled), (len(self._records), len(sampled))
        for inst, (iou, gt_index, negative_weight) in zip(sampled, self._records):
            inst.gt_iou = iou
            inst.gt_index = gt_index
            if negative_weight is not None:
                inst.isr_negative_weight = negative_weight
        if self._valid and sum(n for _, n in self._valid) > 0:
            fraction = sum(v for v, _ in self._valid) / sum(n for _, n in self._valid)
            get_event_storage().put_scalar("isr/neg_valid_fraction", fraction)
        self._boxes, self._ious = [], []
        return sampled

    def _sample_proposals(self, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            matched_idxs: (R,) the matched ground-truth index of each proposal.
            matched_labels: (R,) the matcher's label (0 background, -1 ignore, 1 foreground).
            gt_classes: (G,) the classes of the image's ground-truth boxes.

        Returns:
            (S,) indices of the sampled proposals (positives first) and (S,) their labels.
        """
        image = len(self._records)
        ious = self._ious[image]
        assert ious.shape == matched_idxs.shape, (tuple(ious.shape), tuple(matched_idxs.shape))
        negative_weight = None
        if self.negative_sampling == "random":
            sampled_idxs, labels = super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        else:
            sampled_idxs, labels, negative_weight = self._sample_score_hlr(image, matched_idxs, matched_labels, gt_classes)
        self._records.append((ious[sampled_idxs], matched_idxs[sampled_idxs], negative_weight))
        return sampled_idxs, labels

    def _sample_score_hlr(
        self, image: int, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The authors' sampler: detectron2's positives (the same first random permutation), and
        negatives by :func:`pisa.isr.score_hlr_sample` from the box head's predictions on all of them.
        Returns the indices, the labels and (S,) weights (1 for the positives)."""
        assert self._features is not None, "Score-HLR sampling runs inside ISRROIHeads.forward, in training"
        if gt_classes.numel() > 0:
            labels = gt_classes[matched_idxs]
            labels[matched_labels == 0] = self.num_classes
            labels[matched_labels == -1] = -1
        else:
            labels = torch.full_like(matched_idxs, self.num_classes)
        positive = ((labels != -1) & (labels != self.num_classes)).nonzero().squeeze(1)
        negative = (labels == self.num_classes).nonzero().squeeze(1)
        num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
        pos_idx = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        predictor = self.box_predictor
        if num_neg > 0:
            boxes = self._boxes[image][negative]
            features = [self._features[f][image : image + 1] for f in self.box_in_features]
            scores, deltas = predictor(self.box_head(self.box_pooler(features, [Boxes(boxes)])))
            best, regressed = predictor.foreground_scores_and_boxes(scores, deltas, boxes)
            ce = F.cross_entropy(scores, torch.full_like(negative, self.num_classes), reduction="none")
            chosen, weights = score_hlr_sample(
                best, regressed, ce, num_neg, gamma=predictor.negative_gamma, beta=predictor.negative_beta,
                score_threshold=self.negative_score_threshold, nms_threshold=predictor.negative_nms_threshold,
            )  # fmt: skip
            neg_idx = negative[chosen]
            self._valid.append((int((best > self.negative_score_threshold).sum()), negative.numel()))
        else:
            neg_idx, weights = negative[:0], torch.ones(0, device=negative.device)
        sampled_idxs = torch.cat([pos_idx, neg_idx])
        sample_weights = torch.cat([torch.ones(num_pos, device=weights.device, dtype=weights.dtype), weights])
        return sampled_idxs, labels[sampled_idxs], sample_weights


@ROI_HEADS_REGISTRY.register()
class PISAROIHeads(ISRROIHeads):
    """ISRROIHeads with CARL (the paper's full PISA for the ROI heads): the box predictor must have
    ``carl=True``, and the hyper-parameter declaration adds CARL's k and b."""

    HYPERPARAMETERS = HYPERPARAMETERS + CARL_HYPERPARAMETERS

    @configurable
    def __init__(self, **kwargs):
        """Args: as :class:`ISRROIHeads`; ``box_predictor`` an ISRFastRCNNOutputLayers with carl=True."""
        super().__init__(**kwargs)
        if not self.box_predictor.carl:
            raise ValueError(
                "PISAROIHeads is ISR + CARL, but box_predictor.carl=False: set "
                "model.roi_heads.box_predictor.carl=True, or use pisa.ISRROIHeads for ISR alone."
            )
