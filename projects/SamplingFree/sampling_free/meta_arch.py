"""Sampling-Free RetinaNet: RetinaNet without the focal loss, trained with the Sampling-Free mechanism."""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .core import (
    GUIDED_LOSS_MODES,
    HYPERPARAMETERS,
    OfficialGuidedLoss,
    guided_classification_loss,
    optimal_prior,
    prior_to_bias,
    set_sigmoid_prior,
    thresholds_from_statistics,
)

require_detectron2("sampling_free.meta_arch")
from detectron2.layers import batched_nms, cat  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from d2imbalance.modeling.retinanet import FocalFreeRetinaNet  # noqa: E402

__all__ = ["RetinaNetSamplingFree"]

logger = logging.getLogger(__name__)


class RetinaNetSamplingFree(FocalFreeRetinaNet):
    """RetinaNet with the focal loss replaced by plain sigmoid cross-entropy on every valid anchor (no
    sampling, no focal term: RetinaNet-None, Eq. 2) and the three ingredients of Sampling-Free (§3.2):

    1. Optimal bias initialisation (Eq. 4): the class logits' bias starts at b = -log((1 - pi) / pi) with
       pi = N_f / (N * C), the fraction of foreground (anchor, class) elements. ``prior_prob=None``
       measures pi on the first training batch that holds foreground (counts summed over GPUs, so every
       replica gets the same bias) and sets the bias before that batch's loss is computed; a float sets
       pi directly (the authors' code: 1e-5).
    2. Guided loss (Eqs. 5-6): ``loss_cls`` = r * L_cls with r = stopgrad(L_reg / L_cls), so the class loss
       has the box loss' magnitude and gradients only through L_cls.
    3. Class-adaptive thresholds (Eq. 7): at inference class j keeps scores above
       theta_j = (N_f / N) * (N_j / N_f), from the anchor counts of every training batch (the buffer
       ``anchor_counts``, saved with the checkpoint) instead of the fixed ``test_score_thresh``.

    Only ``losses`` (which also performs the first-batch initialisation) and ``inference_single_image``
    differ from :class:`RetinaNet`; head, anchors, matching, decoding and NMS are inherited.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self,
        *,
        prior_prob: Optional[float] = None,
        guided_loss: str = "paper",
        official_warmup_iters: int = 100,
        class_adaptive_threshold: bool = True,
        **kwargs,
    ):
        """
        Args:
            prior_prob: pi, the initial sigmoid score of every class logit. None (the paper): measured on
                the first training batch with foreground, pi = N_f / (N * C) (Eq. 4). A float in (0, 1)
                sets the bias at construction (the authors' code uses 1e-5 for COCO RetinaNet).
            guided_loss: one of :data:`sampling_free.core.GUIDED_LOSS_MODES`: "paper" (Eqs. 5-6, r per
                mini-batch), "official" (the authors' code: r frozen after ``official_warmup_iters``,
                learned uncertainty weights, an extra "loss_sigma"), "off" (plain L_cls; ablation).
            official_warmup_iters: iterations over which the "official" mode measures r (code: 100).
            class_adaptive_threshold: True: per-class thresholds of Eq. 7 at inference. False: the fixed
                ``test_score_thresh`` for every class (RetinaNet's 0.05; the authors' code 1e-3).
            kwargs: the arguments of :class:`RetinaNet` (``head`` must be a RetinaNetHead, i.e. have
                ``cls_score``), without ``focal_loss_alpha`` / ``focal_loss_gamma`` (no focal loss).
        """
        super().__init__(**kwargs)
        if guided_loss not in GUIDED_LOSS_MODES:
            raise ValueError(f"guided_loss={guided_loss!r} is not one of {GUIDED_LOSS_MODES}.")
        if prior_prob is not None and not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob={prior_prob} must be in (0, 1), or None to measure it on the first batch.")
        if not hasattr(self.head, "cls_score"):
            raise ValueError(
                f"head {type(self.head).__name__} has no cls_score layer whose bias the prior initialises; "
                "use detectron2's RetinaNetHead."
            )
        self.guided_loss = guided_loss
        self.class_adaptive_threshold = class_adaptive_threshold
        self.official_loss = OfficialGuidedLoss(official_warmup_iters) if guided_loss == "official" else None
        # pi behind the current bias; 0 = not initialised yet (measured on the first batch with foreground).
        self.register_buffer("prior", torch.zeros(()))
        # Valid anchors of all training batches so far, by label: [N_0, ..., N_{K-1}, background].
        self.register_buffer("anchor_counts", torch.zeros(self.num_classes + 1, dtype=torch.long))
        self._warned_no_statistics = False
        if prior_prob is not None:
            set_sigmoid_prior(self.head.cls_score.bias, self.prior, prior_prob)

    def _count_anchors(self, gt_labels: Tensor) -> Tensor:
        """(K + 1,) counts of the batch's valid anchors by label, summed over GPUs."""
        valid = gt_labels >= 0
        counts = torch.bincount(gt_labels[valid], minlength=self.num_classes + 1)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(counts)
        return counts

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes) -> Dict[str, Tensor]:
        """
        Args:
            anchors, gt_labels, gt_boxes: as in :meth:`RetinaNet.losses`; gt_labels are (R,) per image with
                values in {-1 (ignored), 0..K-1, K (background)}.
            pred_logits: L tensors (N, Hi*Wi*A, K); pred_anchor_deltas: L tensors (N, Hi*Wi*A, 4).

        Returns:
            "loss_cls" (r * L_cls in the guided modes), "loss_box_reg" and, in "official" mode, "loss_sigma".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        num_pos_local = pos_mask.sum()

        counts = self._count_anchors(gt_labels)
        self.anchor_counts += counts
        # One host read for the counts and the initialisation state.
        n_pos_local, n_pos, n_valid, prior = torch.cat(
            [num_pos_local.view(1).double(), counts[:-1].sum().view(1).double(),
             counts.sum().view(1).double(), self.prior.view(1).double()]
        ).tolist()
        storage = get_event_storage()
        if prior <= 0 and n_pos > 0:
            prior = optimal_prior(n_pos, n_valid, self.num_classes)
            delta = set_sigmoid_prior(self.head.cls_score.bias, self.prior, prior)  # (A * K,)
            pred_logits = self._shift_logits(pred_logits, delta)
            storage.put_scalar("sampling_free/prior", prior, smoothing_hint=False)
            logger.info(f"Sampling-Free: pi = N_f / (N * C) = {n_pos:.0f} / ({n_valid:.0f} * {self.num_classes}) "
                        f"= {prior:.3g} on the first batch; class bias set to {prior_to_bias(prior):.4f}.")

        storage.put_scalar("num_pos_anchors", n_pos_local / num_images)
        normalizer = self._ema_update("loss_normalizer", max(n_pos_local, 1), 100)

        # Plain sigmoid cross-entropy on every valid anchor and class (Eq. 2): no sampling, no focal term.
        target = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[:, :-1]
        logits = cat(pred_logits, dim=1)[valid_mask]
        loss_cls = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="sum") / normalizer
        loss_box_reg = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask) / normalizer

        if self.guided_loss == "paper":
            scaled, ratio = guided_classification_loss(loss_cls, loss_box_reg)
            losses = {"loss_cls": scaled, "loss_box_reg": loss_box_reg}
        elif self.guided_loss == "official":
            losses = self.official_loss(loss_cls, loss_box_reg)
            ratio = self.official_loss.ratio
        else:
            losses = {"loss_cls": loss_cls, "loss_box_reg": loss_box_reg}
            ratio = torch.ones_like(loss_cls)
        names = ["guided_ratio", "loss_cls_unscaled", "loss_box_reg_unscaled"]
        values = [ratio, loss_cls, loss_box_reg]
        if self.official_loss is not None:
            names += ["sigma_cls", "sigma_reg"]
            values += list(self.official_loss.sigmas.detach().unbind())
        for name, value in zip(names, torch.stack([v.detach().float() for v in values]).tolist()):
            storage.put_scalar(f"sampling_free/{name}", value)
        return losses

    def _shift_logits(self, pred_logits: List[Tensor], delta: Tensor) -> List[Tensor]:
        """Add a change of the cls_score bias, (A * K,), to logits already computed with the old bias
        ((N, Hi*Wi*A, K) per level), so the first batch's loss uses the new initialisation exactly."""
        k = self.num_classes
        d = delta.view(-1, k).to(pred_logits[0].dtype)  # (A, K), detectron2's (anchor, class) channel order
        return [(x.view(x.shape[0], -1, d.shape[0], k) + d).view_as(x) for x in pred_logits]

    def score_thresholds(self) -> Union[float, Tensor]:
        """The inference score threshold: (K,) class-adaptive thresholds (Eq. 7), or a float.

        Eq. 7 needs anchor statistics. They come from the training batches seen by this model
        (``anchor_counts``). Without them (a model that was never trained, or a checkpoint without the
        buffer) but with a known prior, Eq. 7 with equal class frequencies gives theta_j = pi for every
        class. With neither, the fixed ``test_score_thresh`` is used, with a warning.
        """
        if not self.class_adaptive_threshold:
            return self.test_score_thresh
        thresholds = thresholds_from_statistics(self.anchor_counts, self.prior)
        if thresholds is not None:
            return thresholds
        if not self._warned_no_statistics:
            logger.warning(
                "Sampling-Free: no anchor statistics (the model has not been trained) and no prior; using the "
                f"fixed test_score_thresh={self.test_score_thresh} instead of the class-adaptive thresholds."
            )
            self._warned_no_statistics = True
        return self.test_score_thresh

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
    ):
        """As :meth:`RetinaNet.inference_single_image`, with the per-class thresholds of Eq. 7 (the
        (K,) tensor broadcasts over the (Hi*Wi*A, K) scores of each level) before the per-level top-k."""
        pred = self._decode_multi_level_predictions(
            anchors,
            box_cls,
            box_delta,
            self.score_thresholds(),
            self.test_topk_candidates,
            image_size,
        )
        keep = batched_nms(pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh)
        return pred[keep[: self.max_detections_per_image]]
