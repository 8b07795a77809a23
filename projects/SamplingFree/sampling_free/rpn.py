"""The RPN of Sampling-Free Faster R-CNN: every valid anchor in the objectness loss, the optimal objectness
bias (Eq. 4 with C = 1) and the guided loss (Eqs. 5-6)."""
import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2

from .core import (
    GUIDED_LOSS_MODES,
    HYPERPARAMETERS,
    optimal_prior,
    prior_to_bias,
    set_sigmoid_prior,
    stage_guided_loss,
)

require_detectron2("sampling_free.rpn")
from detectron2.config import configurable  # noqa: E402
from detectron2.modeling.proposal_generator.rpn import RPN  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["SamplingFreeRPN"]

logger = logging.getLogger(__name__)


class SamplingFreeRPN(RPN):
    """detectron2's RPN without its 256-anchor sampling, trained with the Sampling-Free mechanism.

    - No sampling: every anchor keeps its matcher label (1 / 0 / -1), so all anchors that are not ignored
      enter the objectness loss (``_subsample_labels`` is the identity). The losses keep detectron2's
      normaliser, ``batch_size_per_image`` x images: a positive anchor weighs what it weighs in the
      sampled RPN, and in the guided loss the classification normaliser cancels.
    - Optimal bias (Eq. 4, one sigmoid: C = 1): the objectness bias starts at -log((1 - pi) / pi) with
      pi = N_f / N over the valid anchors of the first training batch that has foreground (counts summed
      over GPUs); the logits of that batch are shifted by the change, so its loss uses the new bias.
      ``prior_prob`` set: the bias is set at construction.
    - Guided loss (Eqs. 5-6): ``loss_rpn_cls`` = w_cls * r * L_cls, r = stopgrad(w_reg * L_reg / L_cls)
      with L_reg this stage's box loss.

    Proposals are predicted as by :class:`RPN` (there is no score threshold in the RPN, so Eq. 7 has no
    place here). Only ``_subsample_labels`` and ``losses`` differ.
    """

    HYPERPARAMETERS = HYPERPARAMETERS  # the sampling (256, 0.5) is gone; nothing replaces it

    @configurable
    def __init__(self, *, prior_prob: Optional[float] = None, guided_loss: str = "paper", **kwargs):
        """
        Args:
            prior_prob: pi, the initial objectness probability. None (the paper; the authors' code
                measures it too, over one epoch): N_f / N on the first training batch with foreground.
                A float in (0, 1) sets the bias at construction.
            guided_loss: "paper" (Eqs. 5-6), "official" (the authors' Faster R-CNN code: the same in the
                RPN) or "off" (plain L_cls, ablation).
            kwargs: :class:`RPN` arguments. ``batch_size_per_image`` is only the loss normaliser;
                ``positive_fraction`` is unused.
        """
        super().__init__(**kwargs)
        if guided_loss not in GUIDED_LOSS_MODES:
            raise ValueError(f"guided_loss={guided_loss!r} is not one of {GUIDED_LOSS_MODES}.")
        if prior_prob is not None and not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob={prior_prob} must be in (0, 1), or None to measure it on the first batch.")
        if not hasattr(self.rpn_head, "objectness_logits"):
            raise ValueError(
                f"RPN head {type(self.rpn_head).__name__} has no objectness_logits layer whose bias the prior "
                "initialises; use detectron2's StandardRPNHead."
            )
        self.guided_loss = guided_loss
        # pi behind the current objectness bias; 0 = not initialised yet.
        self.register_buffer("prior", torch.zeros(()))
        if prior_prob is not None:
            set_sigmoid_prior(self.rpn_head.objectness_logits.bias, self.prior, prior_prob)

    def _subsample_labels(self, label: Tensor) -> Tensor:
        """No sampling: every anchor keeps its matcher label."""
        return label

    def losses(
        self,
        anchors,
        pred_objectness_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes,
    ) -> Dict[str, Tensor]:
        """
        Args:
            pred_objectness_logits: L tensors (N, Hi*Wi*A); gt_labels: N tensors (R,) in {1, 0, -1}, not
                subsampled. Others as in :meth:`RPN.losses`.

        Returns:
            "loss_rpn_cls" (guided) and "loss_rpn_loc".
        """
        labels = torch.stack(gt_labels)
        counts = torch.stack([(labels == 1).sum(), (labels >= 0).sum()])  # N_f, N of this process
        total = counts.clone()
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(total)
        (n_f_local, n_local), (n_f, n), prior = counts.tolist(), total.tolist(), float(self.prior)
        storage = get_event_storage()
        if prior <= 0 and n_f > 0:
            prior = optimal_prior(n_f, n, 1)
            delta = set_sigmoid_prior(self.rpn_head.objectness_logits.bias, self.prior, prior)  # (A,)
            a = delta.numel()
            pred_objectness_logits = [
                (x.view(x.shape[0], -1, a) + delta.to(x.dtype)).view_as(x) for x in pred_objectness_logits
            ]
            storage.put_scalar("sampling_free/rpn_prior", prior, smoothing_hint=False)
            logger.info(f"Sampling-Free RPN: pi = N_f / N = {n_f} / {n} = {prior:.3g} on the first batch; "
                        f"objectness bias set to {prior_to_bias(prior):.4f}.")
        losses = super().losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        unscaled = losses["loss_rpn_cls"]
        losses["loss_rpn_cls"], ratio = stage_guided_loss(
            unscaled, losses["loss_rpn_loc"], self.guided_loss, cls_weight=self.loss_weight.get("loss_rpn_cls", 1.0)
        )
        num_images = len(gt_labels)
        storage.put_scalar("sampling_free/rpn_num_samples", n_local / num_images)
        storage.put_scalar("sampling_free/rpn_fg_fraction", n_f_local / max(n_local, 1))
        for name, value in zip(["rpn_guided_ratio", "rpn_loss_cls_unscaled"],
                               torch.stack([ratio.float(), unscaled.detach().float()]).tolist()):
            storage.put_scalar(f"sampling_free/{name}", value)
        return losses
