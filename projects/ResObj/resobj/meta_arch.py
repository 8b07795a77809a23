"""RetinaNet-ResObj (paper §3.2, Fig. 3b); with a head of T=0 residual steps it is RetinaNet-Obj (§3.1)."""
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from d2imbalance._compat import require_detectron2

from .cascade import HYPERPARAMETERS, final_objectness, fuse_scores
from .loss import PositiveCountNormalizer, check_cascade_head, check_cascade_options, objectness_loss_sums

require_detectron2("resobj.meta_arch")
from detectron2.layers import cat  # noqa: E402
from detectron2.structures import ImageList, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from d2imbalance.modeling.retinanet import FocalFreeRetinaNet  # noqa: E402

__all__ = ["RetinaNetResObj", "OFFICIAL_LOSS_SCALES"]

#: Authors'-code mode (chenjoya/resobj@15da804) divides the objectness loss by 20x and the class loss by
#: 10x the positive-count normaliser, and the box loss by 1x.
OFFICIAL_LOSS_SCALES = {"loss_obj": 20.0, "loss_cls": 10.0, "loss_box_reg": 1.0}


class RetinaNetResObj(FocalFreeRetinaNet):
    """RetinaNet whose focal loss is replaced by residual objectness.

    Training (§3.1-3.2): the class subnet takes a sigmoid cross-entropy (no focal term) on positive
    anchors only; negatives incur only objectness losses; the objectness subnet takes BCE on all valid
    anchors (L_obj) and the residual subnets the gated cascade losses L_1..L_T (Algorithm 1); the box
    loss is RetinaNet's. Every loss is divided by the positive-anchor count (see
    :class:`resobj.loss.PositiveCountNormalizer`).

    Inference: P(class) = sigmoid(cls) * sigmoid(o_T), fused before the score threshold and the per-level
    top-k on every level, then class-wise NMS (defaults 0.001 / 0.45, RetinaNet-Obj's best in Table 1b).

    Only ``forward_training``, ``losses`` and ``forward_inference`` differ from :class:`RetinaNet`;
    anchor labelling, decoding and NMS are inherited.
    """

    HYPERPARAMETERS = HYPERPARAMETERS  # T only: the focal loss is gone

    def __init__(
        self,
        *,
        cascade_mode: str = "paper",
        gate: str = "image",
        loss_normalizer_momentum: float = 0.9,
        loss_normalizer_init: float = 100.0,
        num_pos_all_reduce: bool = True,
        test_score_thresh: float = 0.001,
        test_nms_thresh: float = 0.45,
        test_objectness_step: Optional[int] = None,
        **kwargs,
    ):
        """
        Args:
            head: a :class:`resobj.head.ResObjHead` (or any head returning class logits, box deltas,
                o_0 and r_1..r_T lists, with attributes ``num_steps`` and ``isolate_residual_grad``).
            cascade_mode: "paper" (Algorithm 1) or "official" (authors' code: one BCE on o_0 + sum r_t,
                no gating, nothing detached, loss scales :data:`OFFICIAL_LOSS_SCALES`).
            gate: "image" or "batch": scope of the minimum positive score (paper mode).
            loss_normalizer_momentum: EMA momentum of the positive count (0 = the batch's own count).
            loss_normalizer_init: the EMA's value before the first batch (detectron2's 100), so an
                early batch with few positives does not divide the loss by ~1.
            num_pos_all_reduce: average the positive count over GPUs before normalising.
            test_score_thresh, test_nms_thresh: on the fused score. Defaults 0.001 / 0.45, RetinaNet-Obj's
                best in Table 1b (34.1 AP); 0.05 / 0.5 is RetinaNet-FL's (Table 1a) and the authors'
                code's.
            test_objectness_step: objectness step used at inference, 0..T; None = T (the paper).
                Lower values reproduce the step-by-step detections of Fig. 5.
            kwargs: :class:`RetinaNet`'s other arguments (``head`` as above), without ``focal_loss_alpha`` /
                ``focal_loss_gamma`` (there is no focal loss).
        """
        super().__init__(test_score_thresh=test_score_thresh, test_nms_thresh=test_nms_thresh, **kwargs)
        check_cascade_options(cascade_mode, gate)
        check_cascade_head(self.head, cascade_mode, "ResObjHead")
        self.cascade_mode = cascade_mode
        self.gate = gate
        self.test_objectness_step = test_objectness_step
        # Official mode keeps the authors' positive-count EMA per GPU (no all-reduce).
        self.loss_normalizer = PositiveCountNormalizer(
            momentum=loss_normalizer_momentum,
            all_reduce=num_pos_all_reduce and cascade_mode == "paper",
            initial=loss_normalizer_init,
        )

    @property
    def num_steps(self) -> int:
        """T, the number of residual steps of the head."""
        return self.head.num_steps

    def _split_predictions(self, predictions):
        """(N, Hi*Wi*A, K | 4 | 1) per level: class logits, deltas, o_0 and a list of T residual lists."""
        assert len(predictions) == 3 + self.num_steps, (len(predictions), self.num_steps)
        logits, deltas, objectness, *residuals = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4] + [1] * (1 + self.num_steps)
        )
        return logits, deltas, objectness, residuals

    def forward_training(self, images, features, predictions, gt_instances):
        logits, deltas, objectness, residuals = self._split_predictions(predictions)
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, logits, gt_labels, deltas, gt_boxes, objectness, residuals)

    def losses(
        self,
        anchors,
        pred_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
        pred_objectness: List[Tensor],
        pred_residuals: List[List[Tensor]],
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors, gt_labels, gt_boxes: as in :meth:`RetinaNet.losses`; gt_labels are (R,) per image
                with values in {-1 (ignored), 0..K-1, K (background)}.
            pred_logits: L tensors (N, Hi*Wi*A, K); pred_anchor_deltas: L tensors (N, Hi*Wi*A, 4).
            pred_objectness: L tensors (N, Hi*Wi*A, 1), the logits o_0.
            pred_residuals: T lists of L tensors (N, Hi*Wi*A, 1), the logits r_1..r_T.

        Returns:
            "loss_cls", "loss_box_reg", "loss_obj" and, in paper mode, "loss_res_t1".."loss_res_tT".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        num_pos = pos_mask.sum()
        normalizer = self.loss_normalizer(num_pos)
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos.item() / num_images)
        storage.put_scalar("resobj/loss_normalizer", normalizer)

        # Sigmoid CE on positive anchors only (§3.1, Eq. 3): P(class | obj) is only defined for objects.
        pos_logits = cat(pred_logits, dim=1)[pos_mask]  # (P, K)
        target = F.one_hot(gt_labels[pos_mask], num_classes=self.num_classes + 1)[:, :-1].to(pos_logits.dtype)
        loss_cls = F.binary_cross_entropy_with_logits(pos_logits, target, reduction="sum")

        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)

        obj_labels = torch.where(valid_mask, pos_mask.long(), torch.full_like(gt_labels, -1))  # {1, 0, -1}
        sums = objectness_loss_sums(
            cat(pred_objectness, dim=1).squeeze(2),
            [cat(r, dim=1).squeeze(2) for r in pred_residuals],
            obj_labels,
            cascade_mode=self.cascade_mode,
            gate=self.gate,
            detach=self.head.isolate_residual_grad,
            log_prefix="train/resobj/",  # training-batch statistics (the evaluator's: eval_objectness/)
        )
        losses = {"loss_cls": loss_cls, "loss_box_reg": loss_box_reg}
        losses.update({f"loss_{k}": v for k, v in sums.items()})
        scales = OFFICIAL_LOSS_SCALES if self.cascade_mode == "official" else {}
        return {k: v / (normalizer * scales.get(k, 1.0)) for k, v in losses.items()}

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]):
        logits, deltas, objectness, residuals = self._split_predictions(predictions)
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores_per_image = [
                # (Hi*Wi*A, K): fused before thresholding and top-k, on every level (pitfall 1).
                fuse_scores(
                    final_objectness(
                        objectness[lvl][img_idx],
                        [r[lvl][img_idx] for r in residuals],
                        step=self.test_objectness_step,
                    ),
                    logits[lvl][img_idx],
                )
                for lvl in range(len(logits))
            ]
            deltas_per_image = [x[img_idx] for x in deltas]
            results.append(self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size))
        return results
