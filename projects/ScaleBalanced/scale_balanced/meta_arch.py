"""RetinaNet-SCB: detectron2's RetinaNet trained with the scale-balanced loss (Eq. 2).

Only training changes: inference, the head and the matching are RetinaNet's own. The matched
ground-truth index per anchor, which ``RetinaNet.label_anchors`` computes and discards, is recorded
from its matcher call (see :mod:`.matching`), so the matching runs once, as in vanilla RetinaNet.

How detectron2's matcher shapes M (``Matcher`` with ``allow_low_quality_matches=True``):
  * every anchor gets ``matched_idxs`` = the argmax-IoU ground truth; IoU >= 0.5 is positive.
  * low-quality matches: for each ground truth, every anchor reaching its highest IoU (all ties
    included) is turned positive, but keeps its argmax owner. These forced matches are counted in M
    of that owner, so M >= 1 for most objects, as in the authors' mmdetection code.
  * unlike mmdetection's assigner, detectron2 does not re-assign a forced anchor to the object it was
    forced for: if that anchor overlaps another object more, the small object can end with M = 0 (no
    positive anchor, no loss, weight unused) and the other object's M grows by one; ties add more than
    one forced anchor. Counts can therefore differ slightly from the authors' code.
  ``scb/frac_unmatched_{small,medium,large}`` in EventStorage shows how often M = 0 happens.
"""
from typing import List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.box_regression import _dense_box_regression_loss
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor
from torch.nn import functional as F

from .loss import normalizer_value, weighted_box_loss, weighted_focal_loss
from .matching import record_matches
from d2imbalance.analysis.hyperparameters import FOCAL_LOSS

from .weights import HYPERPARAMETERS, WEIGHTING_FORMS, batch_scale_balanced_weights

__all__ = ["RetinaNetSCB"]

NORMALIZERS = ("num_pos", "weight_sum")


def check_scb_args(weighting_form: str, normalize_by: str, valid_normalizers=NORMALIZERS) -> None:
    """Raise ValueError on an unknown weighting form or normaliser (shared by the SCB modules)."""
    if weighting_form not in WEIGHTING_FORMS:
        raise ValueError(
            f"weighting_form={weighting_form!r} is not one of {sorted(WEIGHTING_FORMS)}; "
            "'scale_balanced' is Eq. 3, the others are the ablation forms of Table 1."
        )
    if normalize_by not in valid_normalizers:
        raise ValueError(f"normalize_by={normalize_by!r} must be one of {valid_normalizers}.")


def gt_areas(gt_instances: List[Instances]) -> List[Tensor]:
    """Box areas (G_n,) of each image's ground truths, in the network's input resolution."""
    return [x.gt_boxes.area() for x in gt_instances]


@META_ARCH_REGISTRY.register()
class RetinaNetSCB(RetinaNet):
    """RetinaNet whose positive anchors' losses are weighted by W_i of their object (Eqs. 2-3)."""

    HYPERPARAMETERS = FOCAL_LOSS + HYPERPARAMETERS  # the focal loss stays

    @configurable
    def __init__(
        self,
        *,
        weighting_form: str = "scale_balanced",
        scb_alpha: float = 1.0,
        scb_beta: float = 3.0,
        weight_box_loss: bool = False,
        normalize_by: str = "num_pos",
        **kwargs,
    ):
        """
        Args:
            weighting_form: "scale_balanced" (Eq. 3) or a Table 1 form: "const", "inv_log",
                "inv_sqrt", "inv", "log_over_m", each scaled by β but "const"; "log_over_m_unscaled" is
                (log M + 1)/M without β (see :data:`scale_balanced.weights.WEIGHTING_FORMS`).
            scb_alpha, scb_beta: α and β of Eq. 3 (paper: 1 and 3 in every experiment).
            weight_box_loss: False (authors' code): only the focal loss of positives is weighted;
                True: the box regression loss of positives is weighted too (Eq. 2 taken literally).
            normalize_by: "num_pos" (authors' code): both losses divided by the EMA of the number of
                positive anchors, as in RetinaNet; "weight_sum": the weighted losses (classification,
                and box regression when ``weight_box_loss``) divided by the EMA of ΣW over positives,
                which keeps the total positive weight of a batch unchanged; an unweighted box loss
                keeps the positive-count EMA.
            kwargs: :class:`detectron2.modeling.RetinaNet` arguments.
        """
        super().__init__(**kwargs)
        check_scb_args(weighting_form, normalize_by)
        self.weighting_form = weighting_form
        self.scb_alpha = scb_alpha
        self.scb_beta = scb_beta
        self.weight_box_loss = weight_box_loss
        self.normalize_by = normalize_by

    @classmethod
    def from_config(cls, cfg):
        # yacs configs: RetinaNet's keys plus an optional MODEL.SCB node (LazyConfig sets kwargs).
        ret = super().from_config(cfg)
        scb = cfg.MODEL.get("SCB", None)
        if scb is not None:
            for key in ("WEIGHTING_FORM", "ALPHA", "BETA", "WEIGHT_BOX_LOSS", "NORMALIZE_BY"):
                if key in scb:
                    name = {"ALPHA": "scb_alpha", "BETA": "scb_beta"}.get(key, key.lower())
                    ret[name] = scb[key]
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        # Same as RetinaNet.forward_training, with the per-anchor weights passed to losses().
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes, weights = self.label_anchors_with_weights(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, weights)

    @torch.no_grad()
    def label_anchors_with_weights(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[Tensor], List[Tensor], Tensor]:
        """``RetinaNet.label_anchors`` plus the per-anchor scale-balanced weights.

        Returns:
            gt_labels, gt_boxes: as :meth:`RetinaNet.label_anchors` ((R,) and (R, 4) per image).
            weights: (N, R) float, W_i on positives, 1 on negatives, 0 on ignored anchors.
        """
        with record_matches(self) as matches:
            gt_labels, gt_boxes = super().label_anchors(anchors, gt_instances)
        assert len(matches) == len(gt_instances), f"{len(matches)} matcher calls for {len(gt_instances)} images"
        weights, stats = batch_scale_balanced_weights(
            [m[0] for m in matches],
            [m[1] for m in matches],
            gt_areas(gt_instances),
            form=self.weighting_form,
            alpha=self.scb_alpha,
            beta=self.scb_beta,
        )
        get_event_storage().put_scalars(**stats)
        return gt_labels, gt_boxes, torch.stack(weights)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, weights=None):
        """RetinaNet's losses with per-anchor weights.

        Args:
            anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes: as :meth:`RetinaNet.losses`
                (pred_logits: L tensors (N, Hi*Wi*A, K); gt_labels: N tensors (R,)).
            weights: (N, R) from :meth:`label_anchors_with_weights`; None gives RetinaNet's losses.
        """
        if weights is None:
            return super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        pos_weights = weights[pos_mask]
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        if num_pos_anchors:
            storage.put_scalar("scb/mean_pos_anchor_weight", pos_weights.mean().item())
        # RetinaNet's normaliser, the EMA of the positive count, stays in charge of every unweighted loss.
        num_pos_normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 100)
        if self.normalize_by == "weight_sum":
            normalizer = self._ema_update(
                "loss_normalizer_weight_sum", max(normalizer_value(pos_weights, self.normalize_by), 1), 100
            )
        else:
            normalizer = num_pos_normalizer

        logits = cat(pred_logits, dim=1)[valid_mask]
        # Drop the background column of the one-hot targets, as RetinaNet does.
        targets = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[:, :-1]
        loss_cls = weighted_focal_loss(
            logits,
            targets.to(logits.dtype),
            weights[valid_mask],
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
        )
        loss_box_reg = dense_box_loss(
            self, anchors, pred_anchor_deltas, gt_boxes, pos_mask, pos_weights if self.weight_box_loss else None
        )
        box_normalizer = normalizer if self.weight_box_loss else num_pos_normalizer
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box_reg / box_normalizer}


def dense_box_loss(detector, anchors, pred_anchor_deltas, gt_boxes, pos_mask, pos_weights=None):
    """Box-regression loss summed over positive anchors, each weighted by W (Eq. 2) when
    ``pos_weights`` is given, else detectron2's unweighted dense loss.

    Args:
        detector: a RetinaNet or RPN (its box2box_transform, box_reg_loss_type, smooth_l1_beta).
        anchors: L Boxes; pred_anchor_deltas: L tensors (N, Hi*Wi*A, 4); gt_boxes: N tensors (R, 4).
        pos_mask: (N, R) bool. pos_weights: (P,) weights of the positives in pos_mask order, or None.
    """
    if pos_weights is None:
        return _dense_box_regression_loss(
            anchors,
            detector.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=detector.box_reg_loss_type,
            smooth_l1_beta=detector.smooth_l1_beta,
        )
    return weighted_box_loss(
        Boxes.cat(anchors).tensor.expand(pos_mask.shape[0], -1, -1)[pos_mask],
        cat(pred_anchor_deltas, dim=1)[pos_mask],
        torch.stack(gt_boxes)[pos_mask],
        pos_weights,
        box2box_transform=detector.box2box_transform,
        loss_type=detector.box_reg_loss_type,
        smooth_l1_beta=detector.smooth_l1_beta,
    )
