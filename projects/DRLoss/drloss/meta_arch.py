"""RetinaNet trained with the DR loss (Qian et al., CVPR 2020): the focal loss replaced, nothing else."""
from typing import Dict, List

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .dr_loss import DEFAULT_NEG_LAMBDA, HYPERPARAMETERS, DRLossSettings, dr_statistics, sigmoid_dr_loss

require_detectron2("drloss.meta_arch")
from detectron2.layers import cat  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from d2imbalance.modeling.retinanet import FocalFreeRetinaNet  # noqa: E402

__all__ = ["RetinaNetDRLoss"]


class RetinaNetDRLoss(DRLossSettings, FocalFreeRetinaNet):
    """RetinaNet whose classification loss is the distributional ranking loss.

    Training: ``loss_cls`` is :func:`drloss.dr_loss.sigmoid_dr_loss` of the sigmoid class scores of
    every valid anchor (already weighted by τ and averaged over images, not divided by the positive
    count); ``loss_box_reg`` is RetinaNet's, divided by detectron2's EMA of the positive count.
    Inference (sigmoid scores, threshold, top-k, NMS), the head and anchor labelling are RetinaNet's.

    Only ``__init__`` and ``losses`` differ from :class:`RetinaNet`.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self,
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
            pos_lambda: λ_+, temperature of the softmin over the positive scores (q_+).
            neg_lambda: λ_-, temperature of the softmax over the negative scores (q_-); the authors'
                0.1 / ln 3.5.
            margin: γ, the required gap P_+ - P_- (0.5).
            logistic_scale: L of the smoothed loss ℓ(z) = log(1 + exp(Lz)) / L (6).
            cls_loss_weight: τ, the weight of the DR loss against the box loss (the authors' 4).
            scope: "image" (one ranking per image, averaged: the paper) or "batch" (one ranking over
                the batch on each GPU: the authors' code).
            class_grouping: "pooled" (all classes ranked together: paper and code) or "per_class"
                (one-vs-rest ranking per class, summed over classes).
            kwargs: :class:`RetinaNet`'s arguments, without ``focal_loss_alpha`` / ``focal_loss_gamma``
                (there is no focal loss; :class:`FocalFreeRetinaNet` refuses them).
        """
        super().__init__(**kwargs)
        self.set_dr_options(
            pos_lambda=pos_lambda, neg_lambda=neg_lambda, margin=margin, logistic_scale=logistic_scale,
            cls_loss_weight=cls_loss_weight, scope=scope, class_grouping=class_grouping,
        )

    def losses(
        self,
        anchors,
        pred_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors, gt_labels, gt_boxes: as in :meth:`RetinaNet.losses`; gt_labels are (R,) per image
                with values in {-1 (ignored), 0..K-1, K (background)}.
            pred_logits: L tensors (N, Hi*Wi*A, K); pred_anchor_deltas: L tensors (N, Hi*Wi*A, 4).

        Returns:
            "loss_cls" (the DR loss) and "loss_box_reg" (RetinaNet's).
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 100)

        dr = sigmoid_dr_loss(cat(pred_logits, dim=1), gt_labels, **self.dr_options())
        for name, value in dr_statistics(dr).items():
            storage.put_scalar(f"drloss/{name}", value)

        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)
        return {"loss_cls": dr.loss, "loss_box_reg": loss_box_reg / normalizer}
