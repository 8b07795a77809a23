"""RetinaNet trained with AP-loss instead of the focal loss (Chen et al., CVPR 2019)."""
from typing import Dict, List

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .ap_loss import DEFAULT_DELTA, HYPERPARAMETERS, anchor_class_labels, ap_loss

require_detectron2("aploss.meta_arch")
from detectron2.layers import cat  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from d2imbalance.modeling.retinanet import FocalFreeRetinaNet  # noqa: E402

__all__ = ["RetinaNetAPLoss"]


class RetinaNetAPLoss(FocalFreeRetinaNet):
    """RetinaNet whose classification loss is AP-loss, trained by the error-driven update.

    Training (paper §3): the head's K class logits per anchor are used as they are, without sigmoid,
    as ranking scores of K (anchor, class) samples. All samples of the minibatch (every image, anchor
    and class on this device) form one ranked list (§3, 'Minibatch training'; Algorithm 1); the anchors
    that the matcher ignores (IoU in [0.4, 0.5)) take no part. ``loss_cls`` is L_AP = 1 - AP of that
    list (interpolated AP by default), and its backward is the error-driven update of
    :class:`aploss.APLossFunction`. There is no focal loss (no alpha, no gamma) and no positive-count
    normaliser on it: L_AP is already an average over the positives. The box loss is RetinaNet's,
    divided by RetinaNet's positive-count EMA and multiplied by ``box_loss_weight``.

    Inference is RetinaNet's: sigmoid of the logits (monotone, so the ranking AP-loss trained is kept),
    score threshold, per-level top-k, class-wise NMS.

    Only ``__init__`` and ``losses`` differ from :class:`RetinaNet`.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self,
        *,
        delta: float = DEFAULT_DELTA,
        interpolated_ap: bool = True,
        box_loss_weight: float = 1.0,
        loss_normalizer_momentum: float = 0.9,
        **kwargs,
    ):
        """
        Args:
            delta: half-width of the piecewise step function H (> 0; paper: 1.0).
            interpolated_ap: optimise interpolated AP (paper and authors' code) or plain AP.
            box_loss_weight: multiplies the box loss (1 = RetinaNet; the authors' code back-propagates
                its smooth-L1 sum / (4 x positives), i.e. 0.25, see configs/APLoss/
                retinanet_aploss_official_R_50_FPN_1x.py).
            loss_normalizer_momentum: of RetinaNet's EMA of the positive-anchor count (start 100) that
                divides the box loss; 0 divides by this batch's own count (the authors' code).
            kwargs: :class:`RetinaNet`'s arguments, without ``focal_loss_alpha`` / ``focal_loss_gamma``
                (there is no focal loss).
        """
        super().__init__(**kwargs)
        if not delta > 0:
            raise ValueError(f"delta={delta!r} must be > 0 (the paper's piecewise step function uses 1.0).")
        if not 0.0 <= loss_normalizer_momentum < 1.0:
            raise ValueError(
                f"loss_normalizer_momentum={loss_normalizer_momentum!r} must be in [0, 1): 0.9 is RetinaNet's "
                "EMA, 0 divides by this batch's positive count (the authors' code)."
            )
        self.delta = float(delta)
        self.interpolated_ap = bool(interpolated_ap)
        self.box_loss_weight = float(box_loss_weight)
        self.loss_normalizer_momentum = float(loss_normalizer_momentum)

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
            "loss_cls" (L_AP of the minibatch) and "loss_box_reg".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        normalizer = self._ema_update(
            "loss_normalizer", max(num_pos_anchors, 1), 100, momentum=self.loss_normalizer_momentum
        )

        # One ranked list: every (image, anchor, class) sample of the batch (Algorithm 1).
        ranking = ap_loss(
            cat(pred_logits, dim=1),  # (N, R, K), sigmoid-free
            anchor_class_labels(gt_labels, self.num_classes),
            delta=self.delta,
            interpolated=self.interpolated_ap,
        )

        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)

        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        storage.put_scalar("aploss/loss_normalizer", normalizer)
        storage.put_scalar("aploss/num_pos", ranking.num_pos)
        storage.put_scalar("aploss/active_negatives", ranking.num_active_negatives)
        num_negatives = (gt_labels >= 0).sum().item() * self.num_classes - ranking.num_pos
        storage.put_scalar("aploss/active_negative_fraction", ranking.num_active_negatives / max(num_negatives, 1))
        if ranking.min_pos_score is not None:  # no AP and no band without positives: log nothing
            storage.put_scalar("aploss/ap", 1.0 - ranking.loss.item())
            storage.put_scalar("aploss/min_pos_score", ranking.min_pos_score)
        return {
            "loss_cls": ranking.loss,
            "loss_box_reg": loss_box_reg * (self.box_loss_weight / normalizer),
        }
