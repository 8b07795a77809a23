"""SSD-SCB: SSD (d2imbalance.modeling.SSD) trained with the scale-balanced loss, as the authors' code
does it (1243France/SCB_Loss, mmdetection v1 ``anchor_target.py`` / ``ssd_head.py``; see
../shared/reference_notes.md).

Only training changes. M_i is counted on SSD's own matching: each ground truth's best prior is forced
positive and owned by it, then IoU >= 0.5 (so every object has M_i >= 1). W_i multiplies the
classification loss of its positive priors; the box loss stays unweighted unless ``weight_box_loss``.
Negatives keep weight 1 and are mined as in vanilla SSD, on their unweighted cross-entropy (3 per
positive per image): the authors weight the per-prior loss before mining, but mining only ranks
negatives, whose weight is 1, so mining before or after weighting picks the same priors. Both losses
are still divided by the number of positives (not by ΣW), as in the authors' code.
"""
from typing import List

import torch
from torch import Tensor

from d2imbalance.modeling import SSD
from detectron2.utils.events import get_event_storage

from .meta_arch import check_scb_args, gt_areas
from .weights import HYPERPARAMETERS, batch_scale_balanced_weights

__all__ = ["SSDSCB", "ssd_prior_weights"]


def ssd_match_labels(matched_idxs: List[Tensor]) -> List[Tensor]:
    """SSD's matching as (index, label) pairs for :mod:`.weights`: label 1 on priors matched to a
    ground truth, 0 on background (SSD ignores no prior); the index of background priors is set to 0
    (never read: their label is 0)."""
    return [m.clamp(min=0) for m in matched_idxs], [(m >= 0).to(torch.int64) for m in matched_idxs]


class SSDSCB(SSD):
    """SSD whose positive priors' classification loss is weighted by W_i of their object (Eqs. 2-3)."""

    HYPERPARAMETERS = SSD.HYPERPARAMETERS + HYPERPARAMETERS  # hard negative mining stays

    def __init__(
        self,
        *,
        weighting_form: str = "scale_balanced",
        scb_alpha: float = 1.0,
        scb_beta: float = 3.0,
        weight_box_loss: bool = False,
        **kwargs,
    ):
        """
        Args:
            weighting_form: "scale_balanced" (Eq. 3) or a Table 1 form (see
                :data:`scale_balanced.weights.WEIGHTING_FORMS`); "const" gives vanilla SSD's losses.
            scb_alpha, scb_beta: α and β of Eq. 3 (paper: 1 and 3 in every experiment).
            weight_box_loss: False (authors' code): only the classification loss of positives is
                weighted; True: their smooth-L1 too (Eq. 2 taken literally).
            kwargs: :class:`d2imbalance.modeling.SSD` arguments.
        """
        super().__init__(**kwargs)
        check_scb_args(weighting_form, "num_pos")
        self.weighting_form = weighting_form
        self.scb_alpha = scb_alpha
        self.scb_beta = scb_beta
        self.weight_box_loss = weight_box_loss

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas = self._transpose_dense_predictions(predictions, [self.num_classes + 1, 4])
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes, matched_idxs = self.label_anchors(anchors, gt_instances)
        weights = self.prior_weights(matched_idxs, gt_instances)
        return self.losses(
            anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, matched_idxs,
            cls_weights=weights, box_weights=weights if self.weight_box_loss else None,
        )

    def prior_weights(self, matched_idxs: List[Tensor], gt_instances) -> Tensor:
        """(N, R) weights: W_i of the owner on positive priors, 1 on background (:func:`ssd_prior_weights`)."""
        return ssd_prior_weights(
            matched_idxs, gt_instances, form=self.weighting_form, alpha=self.scb_alpha, beta=self.scb_beta
        )


@torch.no_grad()
def ssd_prior_weights(
    matched_idxs: List[Tensor], gt_instances, *, form: str, alpha: float, beta: float, log_prefix: str = "scb"
) -> Tensor:
    """(N, R) weights of an SSD-style matching: W_i of the owner on positive priors, 1 on background; logs
    the size-class statistics (mean M, weight, unmatched fraction by input-resolution size) and the mean
    positive weight to EventStorage under ``log_prefix`` (RefineDet-SCB: "scb/arm", "scb/odm").

    Args:
        matched_idxs: per image (R,) the matched ground truth's index, -1 on background.
    """
    indices, labels = ssd_match_labels(matched_idxs)
    weights, stats = batch_scale_balanced_weights(
        indices, labels, gt_areas(gt_instances), form=form, alpha=alpha, beta=beta
    )
    weights = torch.stack(weights)
    storage = get_event_storage()
    storage.put_scalars(**{log_prefix + key[len("scb"):]: value for key, value in stats.items()})
    positive = torch.stack(labels) == 1
    if positive.any():
        storage.put_scalar(f"{log_prefix}/mean_pos_anchor_weight", weights[positive].mean().item())
    return weights
