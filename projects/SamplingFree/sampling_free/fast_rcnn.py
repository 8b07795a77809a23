"""The box predictor of Sampling-Free Faster R-CNN: the optimal softmax bias (Eq. 4), the loss normaliser of
an unsampled head, the guided loss (Eqs. 5-6) and the class-adaptive thresholds (Eq. 7).

detectron2's predictor owns a box head's losses and inference, so the method's changes to both live here;
:class:`sampling_free.roi_heads.SamplingFreeROIHeads` only stops the sampling and feeds this predictor the
label counts of every training batch.
"""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .core import (
    GUIDED_LOSS_MODES,
    OFFICIAL_RCNN_CLS_SCALE,
    optimal_prior,
    softmax_prior_to_bias,
    stage_guided_loss,
    thresholds_from_statistics,
)

require_detectron2("sampling_free.fast_rcnn")
from detectron2.config import configurable  # noqa: E402
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["SamplingFreeOutputLayers"]

logger = logging.getLogger(__name__)


class SamplingFreeOutputLayers(FastRCNNOutputLayers):
    """The softmax FastRCNNOutputLayers of Sampling-Free Faster R-CNN.

    - Optimal bias (Eq. 4 carried to the softmax, :func:`sampling_free.core.softmax_prior_to_bias`): every
      foreground logit's bias starts at log(pi / (1 - C * pi)), the background's at 0, with
      pi = N_f / (N * C) over the labelled proposals of the first training batch that has foreground and
      background (:meth:`count_proposal_labels`, called before that batch's box head runs).
    - Normaliser: detectron2's losses divide by the number of RoIs, which without sampling is every
      proposal (~1000 + G per image on COCO instead of 512). They are rescaled to ``loss_rois_per_image``
      x images, so a foreground RoI's box loss weighs what it weighs in the sampled baseline (as the RPN's
      normaliser does); in the guided loss the classification normaliser cancels.
    - Guided loss (Eqs. 5-6): ``loss_cls`` = w_cls * r * L_cls, r = stopgrad(w_reg * L_reg / L_cls).
    - Class-adaptive thresholds (Eq. 7): at inference class j keeps softmax scores above
      theta_j = N_j / N, from the labelled proposals of every training batch (buffer ``proposal_counts``),
      instead of the fixed ``test_score_thresh``.

    Only ``__init__``, ``from_config``, ``losses`` and ``inference`` differ from detectron2's predictor.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        loss_rois_per_image: int,
        prior_prob: Optional[float] = None,
        optimal_bias_init: bool = True,
        guided_loss: str = "paper",
        class_adaptive_threshold: bool = True,
        **kwargs,
    ):
        """
        Args:
            loss_rois_per_image: the RoIs per image the losses are normalised to: the sampled baseline's
                ``batch_size_per_image`` (the configs interpolate the ROI heads' value).
            prior_prob: pi, the initial softmax probability of each foreground class (the background gets
                1 - C * pi). None: measured on the first training batch, pi = N_f / (N * C). A float in
                (0, 1 / C) sets the biases at construction.
            optimal_bias_init: False: keep detectron2's initialisation (and the authors' code's: bias 0,
                every class at 1 / (C + 1)); ``prior_prob`` must then be None.
            guided_loss: "paper" (Eqs. 5-6), "official" (the authors' Faster R-CNN code: 2 * r * L_cls,
                :data:`sampling_free.core.OFFICIAL_RCNN_CLS_SCALE`) or "off" (plain L_cls, ablation).
            class_adaptive_threshold: True: the thresholds of Eq. 7 at inference; False:
                ``test_score_thresh`` for every class (the authors' code: 1e-4).
            input_shape, kwargs: :class:`FastRCNNOutputLayers` arguments, with softmax scores
                (``use_sigmoid_ce=False``, the default).
        """
        if kwargs.get("use_sigmoid_ce", False):
            raise ValueError(
                "use_sigmoid_ce=True: Sampling-Free's ROI classifier is a softmax over C classes + background "
                "(its bias, Eq. 4, and its thresholds, Eq. 7, are derived for it); set use_sigmoid_ce=False."
            )
        super().__init__(input_shape, **kwargs)
        if not isinstance(loss_rois_per_image, int) or loss_rois_per_image < 1:
            raise ValueError(
                f"loss_rois_per_image={loss_rois_per_image!r} must be a positive int: the ROI heads' "
                "batch_size_per_image (e.g. '${..batch_size_per_image}' in a LazyConfig)."
            )
        if guided_loss not in GUIDED_LOSS_MODES:
            raise ValueError(f"guided_loss={guided_loss!r} is not one of {GUIDED_LOSS_MODES}.")
        if prior_prob is not None:
            if not optimal_bias_init:
                raise ValueError(f"prior_prob={prior_prob} is given but optimal_bias_init=False; drop one of them.")
            softmax_prior_to_bias(prior_prob, self.num_classes)  # raises on a value out of (0, 1 / C)
        self.loss_rois_per_image = loss_rois_per_image
        self.optimal_bias_init = optimal_bias_init
        self.guided_loss = guided_loss
        self.class_adaptive_threshold = class_adaptive_threshold
        # pi behind the current foreground biases; 0 = not initialised (yet, or ever: optimal_bias_init=False).
        self.register_buffer("prior", torch.zeros(()))
        # Labelled proposals of all training batches, by label: [N_0, ..., N_{C-1}, background].
        self.register_buffer("proposal_counts", torch.zeros(self.num_classes + 1, dtype=torch.long))
        self._warned_no_statistics = False
        if prior_prob is not None:
            self._set_prior(prior_prob)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """detectron2's keys; the loss normaliser is ``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE`` (a yacs config
        sets no Sampling-Free key: the defaults apply)."""
        normaliser = cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
        return {**super().from_config(cfg, input_shape), "loss_rois_per_image": normaliser}

    @torch.no_grad()
    def _set_prior(self, prior: float) -> None:
        b_fg, b_bg = softmax_prior_to_bias(prior, self.num_classes)
        bias = self.cls_score.bias
        bias[: self.num_classes] = b_fg
        bias[self.num_classes] = b_bg
        self.prior.fill_(prior)

    @torch.no_grad()
    def count_proposal_labels(self, labels: Tensor) -> None:
        """Add one training batch's labelled proposals to the statistics of Eqs. 4 and 7 (summed over GPUs)
        and, on the first batch with foreground and background, set the biases at pi = N_f / (N * C).

        Args:
            labels: (R,) the labels in [0, C] (C: background) of every labelled proposal of the batch.
        """
        counts = torch.bincount(labels, minlength=self.num_classes + 1)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(counts)
        self.proposal_counts += counts
        n_f, n, prior = torch.stack([counts[:-1].sum().double(), counts.sum().double(), self.prior.double()]).tolist()
        if self.optimal_bias_init and prior <= 0 and 0 < n_f < n:
            prior = optimal_prior(n_f, n, self.num_classes)
            self._set_prior(prior)
            get_event_storage().put_scalar("sampling_free/roi_prior", prior, smoothing_hint=False)
            logger.info(f"Sampling-Free box predictor: pi = N_f / (N * C) = {n_f:.0f} / ({n:.0f} * {self.num_classes}) "
                        f"= {prior:.3g} on the first batch; foreground biases set to "
                        f"{softmax_prior_to_bias(prior, self.num_classes)[0]:.4f}, background 0.")

    def losses(self, predictions: Tuple[Tensor, Tensor], proposals: List[Instances]) -> Dict[str, Tensor]:
        """detectron2's {"loss_cls", "loss_box_reg"}, each divided by the R labelled RoIs, rescaled to
        ``loss_rois_per_image`` x images, and the guided classification term (class docstring)."""
        losses = super().losses(predictions, proposals)
        num_rois = sum(len(p) for p in proposals)
        scale = max(num_rois, 1) / float(self.loss_rois_per_image * len(proposals))
        loss_cls, loss_box_reg = losses["loss_cls"] * scale, losses["loss_box_reg"] * scale
        guided, ratio = stage_guided_loss(
            loss_cls, loss_box_reg, self.guided_loss,
            cls_weight=self.loss_weight.get("loss_cls", 1.0), official_scale=OFFICIAL_RCNN_CLS_SCALE,
        )  # fmt: skip
        storage = get_event_storage()
        for name, value in zip(["roi_guided_ratio", "roi_loss_cls_unscaled", "roi_loss_box_reg"],
                               torch.stack([ratio.float(), loss_cls.detach().float(),
                                            loss_box_reg.detach().float()]).tolist()):
            storage.put_scalar(f"sampling_free/{name}", value)
        return {**losses, "loss_cls": guided, "loss_box_reg": loss_box_reg}

    def score_thresholds(self) -> Union[float, Tensor]:
        """(C,) thresholds of Eq. 7 from ``proposal_counts``; without statistics theta_j = pi if a prior is
        known (Eq. 7 with equal class frequencies), else ``test_score_thresh`` (warned once).
        ``test_score_thresh`` when ``class_adaptive_threshold`` is False."""
        fixed = float(self.test_score_thresh)
        if not self.class_adaptive_threshold:
            return fixed
        thresholds = thresholds_from_statistics(self.proposal_counts, self.prior)
        if thresholds is not None:
            return thresholds
        if not self._warned_no_statistics:
            logger.warning(
                "Sampling-Free box predictor: no proposal statistics (not trained) and no prior; using the fixed "
                f"test_score_thresh={fixed} instead of the class-adaptive thresholds."
            )
            self._warned_no_statistics = True
        return fixed

    def inference(self, predictions: Tuple[Tensor, Tensor], proposals: List[Instances]):
        """detectron2's inference with :meth:`score_thresholds` in place of ``test_score_thresh``: the (C,)
        thresholds of Eq. 7 broadcast over the (R, C) foreground scores in :func:`fast_rcnn_inference`."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        image_shapes = [x.image_size for x in proposals]
        return fast_rcnn_inference(
            boxes, scores, image_shapes, self.score_thresholds(), self.test_nms_thresh, self.test_topk_per_image
        )
