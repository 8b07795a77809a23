"""RetinaNet trained with GHM-C and, optionally, GHM-R (Li et al., AAAI 2019): only ``losses`` differs.

The head (with RetinaNet's biased initialisation, prior 0.01), the anchors, the matcher (IoU 0.5 / 0.4,
ignored anchors in between) and inference are detectron2's RetinaNet. The focal loss becomes GHM-C: a
plain sigmoid cross-entropy per (valid anchor, class) element weighted by beta = N / GD(g)
(:mod:`ghm.ghm_loss`); ignored anchors (label -1) are neither counted in the density nor in N.

Normalisers: GHM-C and GHM-R normalise themselves (1/N sum beta_i L_i = sum L_i / GD(g_i)), as in the
paper and the authors' code, so neither uses RetinaNet's positive-count EMA. The smooth L1 and ASL1 box
losses keep RetinaNet's normaliser (the EMA of the positive-anchor count, start 100, momentum 0.9).

``ghm_mode="official"`` also reproduces how mmdetection applies the authors' losses: once per FPN level
(P3 first), each level with its own N and histogram, all levels updating the same EMA one after the
other, and the five level losses summed. ``"paper"`` (default) builds one histogram over all valid
elements of the batch, N being their number, as Eq. 7 defines N ("the total number of examples").
"""
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from d2imbalance._compat import require_detectron2

from .ghm_loss import HYPERPARAMETERS, MODES, GradientDensity, asl1, density_summary, ghm_c_loss, ghm_r_loss

require_detectron2("ghm.meta_arch")
from detectron2.layers import cat  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from d2imbalance.modeling.retinanet import FocalFreeRetinaNet  # noqa: E402

__all__ = ["RetinaNetGHM", "BOX_LOSSES"]

#: "smooth_l1": RetinaNet's own box loss (``box_reg_loss_type``, ``smooth_l1_beta``) over the positive
#: anchors / the positive-count EMA; "asl1": the authentic smooth L1 with the same normaliser (the paper's
#: ASL1 row); "ghm_r": GHM-R.
BOX_LOSSES = ("smooth_l1", "asl1", "ghm_r")


class RetinaNetGHM(FocalFreeRetinaNet):
    """RetinaNet with GHM-C as its classification loss and GHM-R, ASL1 or RetinaNet's own box loss.

    Only :meth:`losses` differs from :class:`RetinaNet` (and the constructor, for the new arguments).
    The two EMAs of region counts are the modules ``ghm_c_density`` and ``ghm_r_density`` (buffers
    ``acc_sum``): they are saved in checkpoints and move with the model.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self,
        *,
        ghm_c_bins: int = 30,
        ghm_c_momentum: float = 0.75,
        ghm_c_loss_weight: float = 1.0,
        box_loss: str = "ghm_r",
        ghm_r_mu: float = 0.02,
        ghm_r_bins: int = 10,
        ghm_r_momentum: float = 0.7,
        ghm_r_loss_weight: float = 10.0,
        ghm_mode: str = "paper",
        ghm_all_reduce: bool = False,
        **kwargs,
    ):
        """
        Args:
            ghm_c_bins, ghm_c_momentum: M and alpha of GHM-C (paper's best M = 30; authors' alpha 0.75).
            ghm_c_loss_weight: factor on the GHM-C loss (authors' config: 1).
            box_loss: one of :data:`BOX_LOSSES`: "ghm_r" (GHM-C + GHM-R, the paper's best, default),
                "smooth_l1" (GHM-C + RetinaNet's box loss, the paper's GHM-C row), "asl1".
            ghm_r_mu, ghm_r_bins, ghm_r_momentum: mu of ASL1, M and alpha of GHM-R (authors' config
                0.02, 10, 0.7); used with ``box_loss="ghm_r"`` (mu also with "asl1").
            ghm_r_loss_weight: factor on the GHM-R loss (authors' config: 10; the paper gives none).
                The other box losses keep RetinaNet's weight 1.
            ghm_mode: "paper" (one histogram per batch, GD = S * M, every region's EMA updated) or
                "official" (the authors' code in mmdetection: one histogram and loss per FPN level, GD =
                S * (non-empty regions), only non-empty regions' EMA updated). See ghm.ghm_loss.
            ghm_all_reduce: average the region counts over GPUs before the EMA (default False: per GPU,
                as the authors' code).
            kwargs: :class:`RetinaNet` arguments, without ``focal_loss_alpha`` / ``focal_loss_gamma``.
        """
        super().__init__(**kwargs)
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss={box_loss!r} is not one of {BOX_LOSSES}.")
        if ghm_mode not in MODES:
            raise ValueError(
                f"ghm_mode={ghm_mode!r} is not one of {MODES}; 'paper' is the text, 'official' the authors' code."
            )
        if ghm_r_mu <= 0:
            raise ValueError(f"ghm_r_mu={ghm_r_mu} must be > 0 (ASL1's smoothing length).")
        self.box_loss = box_loss
        self.ghm_mode = ghm_mode
        self.ghm_c_loss_weight = ghm_c_loss_weight
        self.ghm_r_loss_weight = ghm_r_loss_weight
        self.ghm_r_mu = ghm_r_mu
        self.ghm_c_density = GradientDensity(ghm_c_bins, ghm_c_momentum, mode=ghm_mode, all_reduce=ghm_all_reduce)
        # Built (and checkpointed) whatever box_loss is, so that one checkpoint loads into every variant.
        self.ghm_r_density = GradientDensity(ghm_r_bins, ghm_r_momentum, mode=ghm_mode, all_reduce=ghm_all_reduce)

    def _level_slices(self, pred_logits: List[Tensor]) -> List[Tuple[int, int, int]]:
        """(level, start, end) of each group of anchors sharing a histogram: every level in the official
        mode, one group (level -1 = all levels) in the paper mode."""
        if self.ghm_mode == "paper":
            return [(-1, 0, sum(x.shape[1] for x in pred_logits))]
        bounds, start = [], 0
        for lvl, x in enumerate(pred_logits):
            bounds.append((lvl, start, start + x.shape[1]))
            start += x.shape[1]
        return bounds

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes) -> Dict[str, Tensor]:
        """
        Args:
            anchors: L Boxes (Hi*Wi*A, 4); pred_logits: L tensors (N, Hi*Wi*A, K);
                pred_anchor_deltas: L tensors (N, Hi*Wi*A, 4); gt_labels: N tensors (R,) with values
                -1 (ignored), 0..K-1, K (background); gt_boxes: N tensors (R, 4). As RetinaNet.losses.

        Returns:
            "loss_cls" (GHM-C) and "loss_box_reg" (GHM-R, ASL1 or RetinaNet's).
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos_anchors / num_images)

        groups = self._level_slices(pred_logits)
        all_logits = cat(pred_logits, dim=1) if self.ghm_mode == "paper" else None
        loss_cls, cls_outputs = 0.0, []
        pos_weight_sum, num_pos_elements = 0.0, 0.0
        for lvl, start, end in groups:
            labels = gt_labels[:, start:end]
            valid = labels >= 0
            logits = (all_logits if lvl < 0 else pred_logits[lvl])[valid]  # (A, K), ignored anchors dropped
            targets = F.one_hot(labels[valid], num_classes=self.num_classes + 1)[:, :-1].to(logits.dtype)
            loss, out = ghm_c_loss(logits, targets, self.ghm_c_density)
            loss_cls = loss_cls + loss
            cls_outputs.append(out)
            pos_weight_sum = pos_weight_sum + (out.weights * targets).sum()
            num_pos_elements = num_pos_elements + targets.sum()

        if self.box_loss == "ghm_r":
            loss_box, box_outputs = self._ghm_r_loss(groups, anchors, pred_anchor_deltas, gt_boxes, pos_mask)
            loss_box = loss_box * self.ghm_r_loss_weight
        else:
            box_outputs = []
            normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 100)
            storage.put_scalar("ghm/loss_normalizer", normalizer)  # RetinaNet's positive-count EMA
            if self.box_loss == "smooth_l1":
                loss_box = self.box_regression_loss(anchors, pred_anchor_deltas, gt_boxes, pos_mask)
            else:  # asl1
                pred, target = self._positive_deltas(
                    Boxes.cat(anchors).tensor, cat(pred_anchor_deltas, dim=1), gt_boxes, pos_mask
                )
                loss_box = asl1(pred - target, self.ghm_r_mu).sum()
            loss_box = loss_box / normalizer

        self._log_statistics(storage, cls_outputs, box_outputs, pos_weight_sum, num_pos_elements)
        return {"loss_cls": loss_cls * self.ghm_c_loss_weight, "loss_box_reg": loss_box}

    def _positive_deltas(self, anchors: Tensor, deltas: Tensor, gt_boxes: List[Tensor], pos_mask: Tensor):
        """Predicted and target deltas (P, 4) of the positive anchors.

        Args:
            anchors: (R', 4) anchors of the group; deltas: (N, R', 4); gt_boxes: N tensors (R', 4);
            pos_mask: (N, R') bool.
        """
        pred = deltas[pos_mask]
        matched = torch.stack(gt_boxes)[pos_mask]
        src = anchors.unsqueeze(0).expand(pos_mask.shape[0], -1, -1)[pos_mask]
        return pred, self.box2box_transform.get_deltas(src, matched)

    def _ghm_r_loss(self, groups, anchors, pred_anchor_deltas, gt_boxes, pos_mask):
        """GHM-R over the coordinates of the positive anchors, one histogram per group (see losses)."""
        all_anchors = Boxes.cat(anchors).tensor
        all_deltas = cat(pred_anchor_deltas, dim=1) if self.ghm_mode == "paper" else None
        loss, outputs = 0.0, []
        for lvl, start, end in groups:
            if lvl < 0:
                group_anchors, deltas = all_anchors, all_deltas
            else:
                group_anchors, deltas = anchors[lvl].tensor, pred_anchor_deltas[lvl]
            pred, target = self._positive_deltas(
                group_anchors, deltas, [b[start:end] for b in gt_boxes], pos_mask[:, start:end]
            )
            group_loss, out = ghm_r_loss(pred, target, self.ghm_r_density, mu=self.ghm_r_mu)
            loss = loss + group_loss
            outputs.append(out)
        return loss, outputs

    @torch.no_grad()
    def _log_statistics(self, storage, cls_outputs, box_outputs, pos_weight_sum, num_pos_elements) -> None:
        """``ghm/cls_*`` and ``ghm/box_*`` (see :func:`ghm.ghm_loss.density_summary`) and
        ``ghm/cls_weight_pos``, the mean beta of the positive elements (anchor x its class); keys whose set
        is empty are skipped (no NaN)."""
        stats = {f"ghm/cls_{k}": v for k, v in density_summary(cls_outputs).items()}
        pos_sum, num_pos = torch.stack([pos_weight_sum.float(), num_pos_elements.float()]).tolist()
        if num_pos > 0:
            stats["ghm/cls_weight_pos"] = pos_sum / num_pos
        if box_outputs:
            stats.update({f"ghm/box_{k}": v for k, v in density_summary(box_outputs).items()})
        storage.put_scalars(**stats)
