"""The ROI heads of Sampling-Free Faster R-CNN: every labelled proposal in the losses, the optimal softmax
bias, the guided loss and the class-adaptive thresholds (Eqs. 4-7)."""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2
from d2imbalance.modeling.proposal_labels import label_all_proposals

from .core import (
    GUIDED_LOSS_MODES,
    HYPERPARAMETERS,
    OFFICIAL_RCNN_CLS_SCALE,
    class_adaptive_thresholds,
    optimal_prior,
    softmax_prior_to_bias,
    stage_guided_loss,
)

require_detectron2("sampling_free.roi_heads")
from d2imbalance.modeling.roi_box_features import box_head_features  # noqa: E402
from detectron2.config import configurable  # noqa: E402
from detectron2.modeling import StandardROIHeads  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["SamplingFreeROIHeads"]

logger = logging.getLogger(__name__)


class SamplingFreeROIHeads(StandardROIHeads):
    """StandardROIHeads trained on every proposal, with the Sampling-Free mechanism.

    - No sampling: every proposal the matcher does not ignore (with the ground-truth boxes appended, as
      detectron2 does) is labelled and enters the box head's losses (``_sample_proposals``).
    - Normaliser: detectron2's predictor divides both losses by the number of RoIs, which is now every
      proposal (~1000 + G per image on COCO instead of 512). They are rescaled to
      ``batch_size_per_image`` x images, so a foreground RoI's box loss weighs what it weighs in the
      sampled baseline (as the RPN's normaliser does); in the guided loss the classification normaliser
      cancels.
    - Optimal bias (Eq. 4 carried to the softmax, :func:`sampling_free.core.softmax_prior_to_bias`): every
      foreground logit's bias starts at log(pi / (1 - C * pi)), the background's at 0, with
      pi = N_f / (N * C) over the labelled proposals of the first training batch that has foreground and
      background (counts summed over GPUs), set before that batch's box head runs.
    - Guided loss (Eqs. 5-6): ``loss_cls`` = w_cls * r * L_cls, r = stopgrad(w_reg * L_reg / L_cls).
    - Class-adaptive thresholds (Eq. 7): at inference class j keeps softmax scores above
      theta_j = N_j / N, from the labelled proposals of every training batch (buffer
      ``proposal_counts``), instead of the predictor's fixed ``test_score_thresh``.

    Mask and keypoint heads, if any, see every foreground proposal (detectron2 selects the foreground
    among the labelled proposals).
    """

    HYPERPARAMETERS = HYPERPARAMETERS  # the sampling (512, 0.25) is gone; nothing replaces it

    @configurable
    def __init__(
        self,
        *,
        prior_prob: Optional[float] = None,
        optimal_bias_init: bool = True,
        guided_loss: str = "paper",
        class_adaptive_threshold: bool = True,
        box_head_recompute_chunk: Optional[int] = None,
        **kwargs,
    ):
        """
        Args:
            prior_prob: pi, the initial softmax probability of each foreground class (the background gets
                1 - C * pi). None: measured on the first training batch, pi = N_f / (N * C). A float in
                (0, 1 / C) sets the biases at construction.
            optimal_bias_init: False: keep the predictor's own initialisation (detectron2's and the
                authors' code: bias 0, every class at 1 / (C + 1)); ``prior_prob`` must then be None.
            guided_loss: "paper" (Eqs. 5-6), "official" (the authors' Faster R-CNN code: 2 * r * L_cls,
                :data:`sampling_free.core.OFFICIAL_RCNN_CLS_SCALE`) or "off" (plain L_cls, ablation).
            class_adaptive_threshold: True: the thresholds of Eq. 7 at inference; False: the predictor's
                ``test_score_thresh`` for every class (the authors' code: 1e-4).
            box_head_recompute_chunk: None: detectron2's box stage, which keeps the activations of every
                RoI for the backward pass (~57 KB each for the FPN head, and there are ~2x the sampled
                baseline's RoIs). An int: in training, the pooler and box head run in chunks of that many
                RoIs per image and their activations are recomputed in the backward pass, one chunk at a
                time (:func:`d2imbalance.modeling.roi_box_features.box_head_features`): same losses and
                gradients, the memory of one chunk, a second forward of the box head. Not a method
                setting; a memory / time trade-off.
            kwargs: :class:`StandardROIHeads` arguments. ``batch_size_per_image`` is only the loss
                normaliser; ``positive_fraction`` is unused. The predictor must be a softmax
                FastRCNNOutputLayers (``cls_score`` with C + 1 outputs).
        """
        super().__init__(**kwargs)
        if guided_loss not in GUIDED_LOSS_MODES:
            raise ValueError(f"guided_loss={guided_loss!r} is not one of {GUIDED_LOSS_MODES}.")
        cls_score = getattr(self.box_predictor, "cls_score", None)
        if cls_score is None or cls_score.out_features != self.num_classes + 1 or getattr(
            self.box_predictor, "use_sigmoid_ce", False
        ):
            raise ValueError(
                f"box_predictor {type(self.box_predictor).__name__} must be a softmax FastRCNNOutputLayers "
                f"(cls_score with num_classes + 1 = {self.num_classes + 1} outputs, use_sigmoid_ce=False)."
            )
        if prior_prob is not None:
            if not optimal_bias_init:
                raise ValueError(f"prior_prob={prior_prob} is given but optimal_bias_init=False; drop one of them.")
            softmax_prior_to_bias(prior_prob, self.num_classes)  # raises on a value out of (0, 1 / C)
        self.optimal_bias_init = optimal_bias_init
        self.guided_loss = guided_loss
        self.class_adaptive_threshold = class_adaptive_threshold
        if box_head_recompute_chunk is not None:
            if not isinstance(box_head_recompute_chunk, int) or box_head_recompute_chunk < 1:
                raise ValueError(
                    f"box_head_recompute_chunk={box_head_recompute_chunk!r} must be a positive int (RoIs per "
                    "chunk, e.g. 512) or None (no recomputation)."
                )
            if self.train_on_pred_boxes:
                raise ValueError(
                    "box_head_recompute_chunk is set with train_on_pred_boxes=True, which it does not support; "
                    "set one of them to its default (None / False)."
                )
        self.box_head_recompute_chunk = box_head_recompute_chunk
        # pi behind the current foreground biases; 0 = not initialised (yet, or ever: optimal_bias_init=False).
        self.register_buffer("prior", torch.zeros(()))
        # Labelled proposals of all training batches, by label: [N_0, ..., N_{C-1}, background].
        self.register_buffer("proposal_counts", torch.zeros(self.num_classes + 1, dtype=torch.long))
        self._warned_no_statistics = False
        if prior_prob is not None:
            self._set_prior(prior_prob)

    @torch.no_grad()
    def _set_prior(self, prior: float) -> None:
        b_fg, b_bg = softmax_prior_to_bias(prior, self.num_classes)
        bias = self.box_predictor.cls_score.bias
        bias[: self.num_classes] = b_fg
        bias[self.num_classes] = b_bg
        self.prior.fill_(prior)

    def _sample_proposals(
        self, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Every proposal the matcher does not ignore, with its label (no sampling).

        Args:
            matched_idxs: (R,) matched ground-truth index; matched_labels: (R,) 0 / -1 / 1 from the matcher;
            gt_classes: (G,) the image's ground-truth classes.

        Returns:
            (S,) proposal indices and (S,) labels in [0, C] (C: background).
        """
        return label_all_proposals(matched_idxs, matched_labels, gt_classes, self.num_classes)

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """:meth:`StandardROIHeads.label_and_sample_proposals` (every proposal, see ``_sample_proposals``),
        then the statistics of Eqs. 4 and 7 and, on the first batch that allows it, the bias."""
        proposals = super().label_and_sample_proposals(proposals, targets)
        labels = torch.cat([p.gt_classes for p in proposals])
        counts = torch.bincount(labels, minlength=self.num_classes + 1)
        local = counts.sum()
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(counts)
        self.proposal_counts += counts
        n_local, n_f, n, prior = torch.stack(
            [local.double(), counts[:-1].sum().double(), counts.sum().double(), self.prior.double()]
        ).tolist()
        storage = get_event_storage()
        storage.put_scalar("sampling_free/roi_num_samples", n_local / len(proposals))
        if self.optimal_bias_init and prior <= 0 and 0 < n_f < n:
            prior = optimal_prior(n_f, n, self.num_classes)
            self._set_prior(prior)
            storage.put_scalar("sampling_free/roi_prior", prior, smoothing_hint=False)
            logger.info(f"Sampling-Free ROI heads: pi = N_f / (N * C) = {n_f:.0f} / ({n:.0f} * {self.num_classes}) "
                        f"= {prior:.3g} on the first batch; foreground biases set to "
                        f"{softmax_prior_to_bias(prior, self.num_classes)[0]:.4f}, background 0.")
        return proposals

    def _forward_box(self, features: Dict[str, Tensor], proposals: List[Instances]):
        """Training: detectron2's box losses, renormalised and guided (class docstring). Inference:
        detectron2's, with the predictor's score threshold replaced by the (C,) thresholds of Eq. 7, which
        :func:`fast_rcnn_inference` broadcasts over the (R, C) foreground scores."""
        if self.training:
            if self.box_head_recompute_chunk is None:
                losses = super()._forward_box(features, proposals)
            else:
                box_features = box_head_features(
                    self.box_pooler, self.box_head, [features[f] for f in self.box_in_features],
                    [p.proposal_boxes for p in proposals], self.box_head_recompute_chunk, recompute=True,
                )  # fmt: skip
                losses = self.box_predictor.losses(self.box_predictor(box_features), proposals)
            return self._sampling_free_losses(losses, proposals)
        predictor, fixed = self.box_predictor, self.box_predictor.test_score_thresh
        predictor.test_score_thresh = self.score_thresholds()
        try:
            return super()._forward_box(features, proposals)
        finally:
            predictor.test_score_thresh = fixed

    def _sampling_free_losses(self, losses: Dict[str, Tensor], proposals: List[Instances]) -> Dict[str, Tensor]:
        """detectron2's {"loss_cls", "loss_box_reg"}, each divided by the R labelled RoIs, rescaled to
        ``batch_size_per_image`` x images, and the guided classification term."""
        num_rois = sum(len(p) for p in proposals)
        scale = max(num_rois, 1) / float(self.batch_size_per_image * len(proposals))
        loss_cls, loss_box_reg = losses["loss_cls"] * scale, losses["loss_box_reg"] * scale
        guided, ratio = stage_guided_loss(
            loss_cls, loss_box_reg, self.guided_loss,
            cls_weight=self.box_predictor.loss_weight.get("loss_cls", 1.0), official_scale=OFFICIAL_RCNN_CLS_SCALE,
        )  # fmt: skip
        storage = get_event_storage()
        for name, value in zip(["roi_guided_ratio", "roi_loss_cls_unscaled", "roi_loss_box_reg"],
                               torch.stack([ratio.float(), loss_cls.detach().float(),
                                            loss_box_reg.detach().float()]).tolist()):
            storage.put_scalar(f"sampling_free/{name}", value)
        return {**losses, "loss_cls": guided, "loss_box_reg": loss_box_reg}

    def score_thresholds(self) -> Union[float, Tensor]:
        """(C,) thresholds of Eq. 7 from ``proposal_counts``; without statistics theta_j = pi if a prior is
        known (Eq. 7 with equal class frequencies), else the predictor's ``test_score_thresh`` (warned once).
        The predictor's threshold when ``class_adaptive_threshold`` is False."""
        fixed = float(self.box_predictor.test_score_thresh)
        if not self.class_adaptive_threshold:
            return fixed
        counts = self.proposal_counts
        n_f, prior = torch.stack([counts[:-1].sum().double(), self.prior.double()]).tolist()
        if n_f > 0:
            return class_adaptive_thresholds(counts[:-1], counts.sum()).float()
        if prior > 0:
            return torch.full((self.num_classes,), prior, dtype=torch.float32, device=counts.device)
        if not self._warned_no_statistics:
            logger.warning(
                "Sampling-Free ROI heads: no proposal statistics (not trained) and no prior; using the fixed "
                f"test_score_thresh={fixed} instead of the class-adaptive thresholds."
            )
            self._warned_no_statistics = True
        return fixed
