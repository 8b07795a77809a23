"""RetinaNet-Conf: RetinaNet with an object-confidence loss and score fusion (paper §3.2-3.3)."""

from typing import Dict, List, Optional

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2
from d2imbalance.analysis.hyperparameters import FOCAL_LOSS

require_detectron2("objconf.meta_arch")

from detectron2.layers import cat  # noqa: E402
from detectron2.modeling.meta_arch.retinanet import RetinaNet  # noqa: E402
from detectron2.structures import ImageList, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from .conf_loss import aligned_box_iou, check_conf_loss_args, object_confidence_loss  # noqa: E402
from .fusion import HYPERPARAMETERS, check_fusion_args, fuse_logits_  # noqa: E402

__all__ = ["RetinaNetConf"]

CONF_LOSS_NORMALIZERS = ("num_pos", "ema")


class RetinaNetConf(RetinaNet):
    """RetinaNet-Conf (Fig. 3d); with :class:`~objconf.head.IoUAwareRetinaNetHead`, IoU-aware RetinaNet.

    Training adds ``loss_conf``: the confidence branch learns the IoU between each positive
    anchor's decoded box and its matched ground truth (Eq. 9). Total loss = cls + box + conf,
    weight 1.0 each (Eq. 10). Inference fuses class score and confidence on every feature level
    before the score threshold and the per-level top-k (Eq. 11, Table 4), so ``test_score_thresh``
    applies to the fused score. The head must return ``(logits, deltas, conf)`` like
    :class:`~objconf.head.RetinaNetConfHead`.
    """

    HYPERPARAMETERS = FOCAL_LOSS + HYPERPARAMETERS  # the focal loss stays

    def __init__(
        self,
        *,
        conf_loss_type: str = "ce",
        cls_loss_weight: float = 1.0,
        box_loss_weight: float = 1.0,
        conf_loss_weight: float = 1.0,
        conf_neg_weight: float = 1e-4,
        conf_gfocal_gamma: float = 2.0,
        conf_smooth_l1_beta: float = 1.0,
        conf_loss_normalizer: str = "num_pos",
        detach_iou_target: bool = False,
        score_fusion: str = "product",
        fusion_alpha: float = 0.4,
        conf_filter_thresh: Optional[float] = None,
        **kwargs,
    ):
        """
        Args:
            conf_loss_type: confidence loss, one of ``objconf.conf_loss.CONF_LOSSES`` (Table 2);
                "ce" is Eq. 9.
            cls_loss_weight, box_loss_weight, conf_loss_weight: loss weights (Eq. 10; 1.0 each).
            conf_neg_weight: w of "ce_w", the weight of negatives (target 0); Table 2 tries 1e-4
                and 1e-3.
            conf_gfocal_gamma: gamma of "gfocal" (Eq. 13).
            conf_smooth_l1_beta: beta of "smooth_l1" on the probability scale. The paper does not
                give it; 1.0 is MMDetection's default, under which the loss is 0.5 (y - p)^2
                everywhere on [0, 1].
            conf_loss_normalizer: "num_pos" divides by the number of positive anchors in the batch
                on this device (Eq. 9, like the authors' code); "ema" by detectron2's EMA of it,
                the focal and box losses' normaliser.
            detach_iou_target: stop the gradient of the confidence loss flowing through the IoU
                target into the box branch. False matches the authors' code (the paper is silent).
            score_fusion: "cls", "cls*conf" or "product" (Table 4, Eq. 11).
            fusion_alpha: alpha of "product", conf^alpha * cls^(1-alpha); 0.4 for RetinaNet-Conf
                (Table 5).
            conf_filter_thresh: tau of the "conf > tau" filter of Table 4 (0.5 there), or None.
            **kwargs: arguments of :class:`RetinaNet` (backbone, head, anchor_generator, ...).
        """
        super().__init__(**kwargs)
        check_conf_loss_args(
            conf_loss_type, conf_neg_weight, conf_gfocal_gamma, conf_smooth_l1_beta
        )
        check_fusion_args(score_fusion, fusion_alpha, conf_filter_thresh)
        if conf_loss_normalizer not in CONF_LOSS_NORMALIZERS:
            raise ValueError(
                f"conf_loss_normalizer={conf_loss_normalizer!r} must be one of {CONF_LOSS_NORMALIZERS}."
            )
        for name, weight in (
            ("cls", cls_loss_weight),
            ("box", box_loss_weight),
            ("conf", conf_loss_weight),
        ):
            if weight < 0:
                raise ValueError(
                    f"{name}_loss_weight={weight} must be >= 0 (the paper uses 1.0, Eq. 10)."
                )
        self.conf_loss_type = conf_loss_type
        self.cls_loss_weight = cls_loss_weight
        self.box_loss_weight = box_loss_weight
        self.conf_loss_weight = conf_loss_weight
        self.conf_neg_weight = conf_neg_weight
        self.conf_gfocal_gamma = conf_gfocal_gamma
        self.conf_smooth_l1_beta = conf_smooth_l1_beta
        self.conf_loss_normalizer = conf_loss_normalizer
        self.detach_iou_target = detach_iou_target
        self.score_fusion = score_fusion
        self.fusion_alpha = fusion_alpha
        self.conf_filter_thresh = conf_filter_thresh

    def _split_predictions(self, predictions: List[List[Tensor]]) -> List[List[Tensor]]:
        """Head outputs (N, A*C, Hi, Wi) -> per level logits (N, Hi*Wi*A, K), deltas (.., 4), conf (.., 1)."""
        if len(predictions) != 3:
            raise ValueError(
                f"RetinaNetConf needs a head returning (logits, deltas, conf), got "
                f"{len(predictions)} outputs; use objconf.RetinaNetConfHead or IoUAwareRetinaNetHead."
            )
        return self._transpose_dense_predictions(predictions, [self.num_classes, 4, 1])

    def forward_training(
        self, images: ImageList, features, predictions, gt_instances: List[Instances]
    ):
        pred_logits, pred_anchor_deltas, pred_conf = self._split_predictions(predictions)
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_conf)

    def losses(
        self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_conf
    ) -> Dict[str, Tensor]:
        """RetinaNet's focal and box losses plus ``loss_conf``.

        Args:
            anchors: L Boxes, level l holding Hl*Wl*A anchors; R = their total.
            pred_logits, pred_anchor_deltas, pred_conf: L tensors each, (N, Hl*Wl*A, K / 4 / 1).
            gt_labels, gt_boxes: N tensors each, (R,) labels in {-1, 0..K} and (R, 4) matched boxes,
                from :meth:`RetinaNet.label_anchors`.

        Returns:
            {"loss_cls", "loss_box_reg", "loss_conf"}, each weighted.
        """
        losses = super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        losses["loss_cls"] = losses["loss_cls"] * self.cls_loss_weight
        losses["loss_box_reg"] = losses["loss_box_reg"] * self.box_loss_weight

        labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (labels >= 0) & (labels != self.num_classes)
        pos_conf, iou_target, pos_cls = self._positive_predictions(
            anchors, pred_logits, pred_anchor_deltas, pred_conf, labels, pos_mask, gt_boxes
        )
        if self.detach_iou_target:
            iou_target = iou_target.detach()

        if self.conf_loss_normalizer == "ema":
            normalizer = self.loss_normalizer  # updated by RetinaNet.losses above
        else:
            normalizer = pos_mask.sum().clamp(min=1).to(iou_target.dtype)
        neg_conf = None
        if self.conf_loss_type == "ce_w":
            neg_conf = cat(pred_conf, dim=1).squeeze(2)[labels == self.num_classes]
        loss_conf = object_confidence_loss(
            pos_conf,
            iou_target,
            normalizer=normalizer,
            loss_type=self.conf_loss_type,
            neg_logits=neg_conf,
            neg_weight=self.conf_neg_weight,
            gfocal_gamma=self.conf_gfocal_gamma,
            smooth_l1_beta=self.conf_smooth_l1_beta,
        )
        losses["loss_conf"] = loss_conf * self.conf_loss_weight
        self._log_positive_statistics(pos_conf, iou_target, pos_cls)
        return losses

    def _positive_predictions(
        self, anchors, pred_logits, pred_anchor_deltas, pred_conf, labels, pos_mask, gt_boxes
    ):
        """Gather, level by level, what the positive anchors predicted; decode boxes for positives only.

        Returns (P,) confidence logits, (P,) IoU targets (differentiable in the deltas) and (P,) class
        logits at the ground-truth class (detached; for logging), in the same order.
        """
        gt_boxes = torch.stack(gt_boxes)  # (N, R, 4)
        conf, ious, cls = [], [], []
        start = 0
        for anchors_l, logits_l, deltas_l, conf_l in zip(
            anchors, pred_logits, pred_anchor_deltas, pred_conf
        ):
            end = start + len(anchors_l)
            mask = pos_mask[:, start:end]  # (N, Hl*Wl*A)
            anchor_idx = mask.nonzero()[:, 1]
            boxes = self.box2box_transform.apply_deltas(
                deltas_l[mask], anchors_l.tensor[anchor_idx]
            )
            ious.append(aligned_box_iou(boxes, gt_boxes[:, start:end][mask]))
            conf.append(conf_l[mask].squeeze(1))
            with torch.no_grad():
                cls.append(
                    logits_l[mask].gather(1, labels[:, start:end][mask].unsqueeze(1)).squeeze(1)
                )
            start = end
        return cat(conf), cat(ious), cat(cls)

    @torch.no_grad()
    def _log_positive_statistics(
        self, pos_conf_logits: Tensor, iou_target: Tensor, pos_cls_logits: Tensor
    ) -> None:
        """EventStorage scalars on positive anchors: mean confidence, mean IoU target, mean class score
        (logged separately from the confidence), and the Pearson correlation of each score with the IoU.
        """
        if iou_target.numel() == 0:
            return
        conf = pos_conf_logits.float().sigmoid()  # no_grad: nothing to detach
        cls = pos_cls_logits.float().sigmoid()
        iou = iou_target.float()
        stats = torch.stack(
            [conf.mean(), iou.mean(), cls.mean(), _pearson(conf, iou), _pearson(cls, iou)]
        ).tolist()
        names = [
            "mean_conf_pos",
            "mean_iou_target",
            "mean_cls_pos",
            "corr_conf_iou",
            "corr_cls_iou",
        ]
        if iou.numel() < 2:
            names, stats = names[:3], stats[:3]  # a correlation needs two points
        get_event_storage().put_scalars(**{f"objconf/{k}": v for k, v in zip(names, stats)})

    def forward_inference(
        self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]
    ):
        pred_logits, pred_anchor_deltas, pred_conf = self._split_predictions(predictions)
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            # Fuse on every level, before the score threshold and top-k of inference_single_image.
            scores_per_image = [
                self.fuse(x[img_idx], c[img_idx]) for x, c in zip(pred_logits, pred_conf)
            ]
            deltas_per_image = [x[img_idx] for x in pred_anchor_deltas]
            results.append(
                self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size)
            )
        return results

    def fuse(self, cls_logits: Tensor, conf_logits: Tensor) -> Tensor:
        """Fused scores (Hl*Wl*A, K) of one image and level, computed in place from its logits."""
        return fuse_logits_(
            cls_logits,
            conf_logits,
            method=self.score_fusion,
            alpha=self.fusion_alpha,
            conf_thresh=self.conf_filter_thresh,
        )


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of two (P,) tensors; 0 where either is constant."""
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / (a.square().sum() * b.square().sum()).sqrt().clamp(min=1e-12)
