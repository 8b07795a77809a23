"""Faster R-CNN whose ROI-head classifier is trained with the DR loss (Qian et al., CVPR 2020).

- :class:`DRFastRCNNOutputLayers` replaces the box predictor's softmax cross-entropy by
  :func:`drloss.dr_loss.dr_loss` over per-class sigmoid scores: each (RoI, class) pair of the sampled
  RoIs is one binary candidate, as in RetinaNet-DR; a background RoI has no positive pair. Inference
  uses the same sigmoid scores (detectron2's ``use_sigmoid_ce`` path, forced on).
- :class:`DRROIHeads` is StandardROIHeads with a check that its predictor is the DR one and the
  hyper-parameter declaration (the RoI sampling it keeps plus the DR loss's four).

The RPN, the RoI sampling (512 per image, 25 % foreground) and the box loss are detectron2's.
"""
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from d2imbalance._compat import require_detectron2
from d2imbalance.analysis.hyperparameters import ROI_HEADS_SAMPLING, Hyperparameter

from .dr_loss import DEFAULT_NEG_LAMBDA, HYPERPARAMETERS, DRLossSettings, dr_loss, dr_statistics

require_detectron2("drloss.faster_rcnn")
from detectron2.config import configurable  # noqa: E402
from detectron2.layers import cat  # noqa: E402
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads  # noqa: E402
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["DRFastRCNNOutputLayers", "DRROIHeads"]


class DRFastRCNNOutputLayers(DRLossSettings, FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose classification loss is the DR loss over sigmoid class scores.

    ``loss_cls`` = ``loss_weight["loss_cls"]`` · :func:`dr_loss` (τ · mean over images of one ranking
    per image, by default); ``loss_box_reg`` is detectron2's. The class scores are p = σ(logit) of the
    K class columns; the (K+1)-th, background, column of ``cls_score`` gets no loss and is ignored at
    inference (``fast_rcnn_inference`` drops it), as in detectron2's sigmoid cross-entropy. The bias
    starts at 0, so every class score starts at 0.5: the authors' PRIOR_PROB 0.5 of RetinaNet-DR.

    EventStorage gets ``drloss/*`` (:func:`drloss.dr_loss.dr_statistics`) and detectron2's
    ``fast_rcnn/*`` accuracies, read as "class c predicted where σ(logit_c) > 0.5 is the largest".

    Only ``__init__``, ``from_config`` (sigmoid scores) and ``losses`` differ.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        pos_lambda: float = 1.0,
        neg_lambda: float = DEFAULT_NEG_LAMBDA,
        margin: float = 0.5,
        logistic_scale: float = 6.0,
        cls_loss_weight: float = 4.0,
        scope: str = "image",
        class_grouping: str = "pooled",
        **kwargs,
    ):
        """
        Args:
            pos_lambda, neg_lambda, margin, logistic_scale, cls_loss_weight, scope, class_grouping:
                as in :func:`drloss.dr_loss.dr_loss` (λ_+, λ_-, γ, L, τ; one ranking per image or per
                batch; all classes pooled or one ranking per class). Defaults: the authors' RetinaNet
                values (the paper gives none for Faster R-CNN).
            input_shape, kwargs: :class:`FastRCNNOutputLayers` arguments. ``use_sigmoid_ce`` is forced
                to True (the DR loss ranks sigmoid scores, and inference must use the same scores);
                passing False, or ``use_fed_loss=True``, raises a ValueError.
        """
        if kwargs.pop("use_sigmoid_ce", True) is not True:
            raise ValueError(
                "use_sigmoid_ce=False: the DR loss ranks per-class sigmoid scores and inference uses them; "
                "leave use_sigmoid_ce unset (or True)."
            )
        if kwargs.get("use_fed_loss", False):
            raise ValueError("use_fed_loss=True: the DR loss ranks every class of every RoI; set use_fed_loss=False.")
        super().__init__(input_shape, use_sigmoid_ce=True, **kwargs)
        self.set_dr_options(
            pos_lambda=pos_lambda, neg_lambda=neg_lambda, margin=margin, logistic_scale=logistic_scale,
            cls_loss_weight=cls_loss_weight, scope=scope, class_grouping=class_grouping,
        )  # fmt: skip

    @classmethod
    def from_config(cls, cfg, input_shape):
        """detectron2's keys (a yacs config sets no DR key: the defaults apply), with sigmoid scores."""
        return {**super().from_config(cfg, input_shape), "use_sigmoid_ce": True}

    def dr_loss_of_rois(self, scores: Tensor, proposals: List[Instances]):
        """:func:`dr_loss` of the sampled RoIs, images padded to the longest with ignored (-1) RoIs.

        Args:
            scores: (R, K+1) logits of the RoIs of all images, in the order of ``proposals``.
            proposals: per image, Instances with ``gt_classes`` (R_i,) in [0, K] (K: background).

        Returns:
            :class:`drloss.dr_loss.DRLossOutput` (its ``loss`` before ``loss_weight``).
        """
        counts = [len(p) for p in proposals]
        probs = pad_sequence(torch.sigmoid(scores[:, : self.num_classes]).split(counts), batch_first=True)
        labels = pad_sequence([p.gt_classes for p in proposals], batch_first=True, padding_value=-1)
        return dr_loss(probs, labels, **self.dr_options())

    def losses(self, predictions: Tuple[Tensor, Tensor], proposals: List[Instances]) -> Dict[str, Tensor]:
        """
        Args:
            predictions: (scores (R, K+1), deltas (R, 4K) or (R, 4)), :meth:`forward`'s output.
            proposals: per image, the sampled RoIs with ``proposal_boxes``, ``gt_classes`` and, in
                images with objects, ``gt_boxes``.

        Returns:
            "loss_cls" (the DR loss) and "loss_box_reg" (detectron2's), each times its ``loss_weight``.
        """
        scores, proposal_deltas = predictions
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        # detectron2's accuracy signals on sigmoid scores: a zero background logit is the 0.5 threshold.
        _log_classification_stats(cat([scores[:, :-1], torch.zeros_like(scores[:, -1:])], dim=1).detach(), gt_classes)

        dr = self.dr_loss_of_rois(scores, proposals)
        storage = get_event_storage()
        for name, value in dr_statistics(dr).items():
            storage.put_scalar(f"drloss/{name}", value)

        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        # Images without objects have no gt_boxes; their RoIs are background, the placeholder is unused.
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        losses = {
            "loss_cls": dr.loss,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}


@ROI_HEADS_REGISTRY.register()
class DRROIHeads(StandardROIHeads):
    """StandardROIHeads with a :class:`DRFastRCNNOutputLayers` box predictor.

    Nothing is computed differently here: the class checks the predictor and declares the
    hyper-parameters (d2imbalance.analysis.hyperparameters): the 512 / 0.25 RoI sampling kept, then
    the DR loss's λ_+, λ_-, γ and L under ``box_predictor.`` (the review counts 4 for DR loss).
    """

    HYPERPARAMETERS = ROI_HEADS_SAMPLING + tuple(
        Hyperparameter(f"box_predictor.{h.name}", h.default, h.meaning) for h in HYPERPARAMETERS
    )

    @configurable
    def __init__(self, **kwargs):
        """
        Args:
            kwargs: :class:`StandardROIHeads` arguments; ``box_predictor`` must be a
                :class:`DRFastRCNNOutputLayers`.
        """
        super().__init__(**kwargs)
        if not isinstance(self.box_predictor, DRFastRCNNOutputLayers):
            raise ValueError(
                f"box_predictor is a {type(self.box_predictor).__name__}; DRROIHeads trains with the DR loss: "
                "set box_predictor._target_ to drloss.DRFastRCNNOutputLayers."
            )
