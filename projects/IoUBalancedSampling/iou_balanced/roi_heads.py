"""Faster R-CNN's ROI heads with IoU-balanced negatives (Pang et al., Libra R-CNN, CVPR 2019, §3.1)."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2
from d2imbalance.modeling.proposal_labels import proposal_class_labels

from .sampling import (
    BIN_RANGES,
    HYPERPARAMETERS,
    POSITIVE_SAMPLINGS,
    check_iou_balanced_options,
    iou_balanced_scalars,
    matcher_negative_iou_top,
    negative_bin_counts,
    subsample_labels_iou_balanced,
)

require_detectron2("iou_balanced.roi_heads")
from detectron2.config import configurable  # noqa: E402
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["IoUBalancedROIHeads"]


class _MaxIoURecorder:
    """Wraps the proposal matcher while ``label_and_sample_proposals`` runs: keeps each proposal's
    highest IoU with the ground truth (the column maxima of the match quality matrix, which the
    matcher computes and discards), then matches as the matcher does. Attributes are forwarded."""

    def __init__(self, matcher, ious: List[Tensor]):
        self.matcher = matcher
        self.ious = ious

    def __call__(self, match_quality_matrix: Tensor):
        if match_quality_matrix.shape[0] == 0:  # no ground truth: every proposal has IoU 0
            best = match_quality_matrix.new_zeros(match_quality_matrix.shape[1])
        else:
            best = match_quality_matrix.max(dim=0).values
        self.ious.append(best)
        return self.matcher(match_quality_matrix)

    def __getattr__(self, name):
        return getattr(self.matcher, name)


@ROI_HEADS_REGISTRY.register()
class IoUBalancedROIHeads(StandardROIHeads):
    """StandardROIHeads whose training proposals have IoU-balanced negatives.

    Matching, the number of positives and negatives per image (``batch_size_per_image``,
    ``positive_fraction``), the positives' random draw, the heads, losses and inference are
    detectron2's; only the draw of the negatives (:meth:`_sample_proposals`) differs. EventStorage gets
    ``iou_balanced/*`` (see :func:`iou_balanced.sampling.iou_balanced_scalars`) beside detectron2's
    ``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples``.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    @configurable
    def __init__(
        self,
        *,
        num_bins: int = 3,
        bin_range: str = "negatives",
        floor_thr: Optional[float] = None,
        floor_fraction: float = 0.0,
        positive_sampling: str = "random",
        **kwargs,
    ):
        """
        Args:
            num_bins: K, the IoU bins sharing each image's negative quota equally (3).
            bin_range: "negatives": the bins split [0, t) with t the IoU below which the proposal
                matcher labels background (0.5; the paper). "max_iou": [0, the image's highest proposal
                IoU), which is 1 whenever the image has objects because the ground truth is appended
                to the proposals (the authors' code).
            floor_thr: None (the paper): no floor. A value t in [0, 1): negatives with IoU <= t are
                kept out of the bins, drawn at random for ``floor_fraction`` of the quota and for what
                the bins cannot fill; the bins then start at t. The authors' code behaves as t = 0
                (see the README).
            floor_fraction: the floor's share of the quota, in [0, 1] (0).
            positive_sampling: "random" (detectron2's draw, unchanged) or "instance_balanced" (about
                the same number of positives per object; the authors' config).
            kwargs: :class:`StandardROIHeads` arguments.
        """
        super().__init__(**kwargs)
        if bin_range not in BIN_RANGES:
            raise ValueError(
                f"bin_range={bin_range!r} is not one of {BIN_RANGES}: 'negatives' (the paper) or 'max_iou' "
                "(the authors' code)."
            )
        if positive_sampling not in POSITIVE_SAMPLINGS:
            raise ValueError(
                f"positive_sampling={positive_sampling!r} is not one of {POSITIVE_SAMPLINGS}: 'random' "
                "(detectron2) or 'instance_balanced' (the authors' config)."
            )
        matcher = self.proposal_matcher
        iou_high = matcher_negative_iou_top(matcher.thresholds, matcher.labels) if bin_range == "negatives" else None
        check_iou_balanced_options(
            num_bins=num_bins, floor_thr=floor_thr, floor_fraction=floor_fraction, iou_high=iou_high
        )
        self.num_bins = num_bins
        self.bin_range = bin_range
        self.floor_thr = floor_thr
        self.floor_fraction = floor_fraction
        self.positive_sampling = positive_sampling
        self.iou_high = iou_high  # top of the binned interval; None: each image's highest IoU
        self._pending_ious: List[Tensor] = []
        self._bin_counts: List[Tensor] = []

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """:meth:`ROIHeads.label_and_sample_proposals`, recording each proposal's highest IoU from the
        matching for :meth:`_sample_proposals`, then logging where the drawn negatives lie."""
        self._pending_ious, self._bin_counts = [], []
        matcher = self.proposal_matcher
        self.proposal_matcher = _MaxIoURecorder(matcher, self._pending_ious)
        try:
            sampled = super().label_and_sample_proposals(proposals, targets)
        finally:
            self.proposal_matcher = matcher
        assert not self._pending_ious, f"{len(self._pending_ious)} matchings were not sampled"
        if self._bin_counts:
            scalars = iou_balanced_scalars(torch.stack(self._bin_counts).sum(dim=0))
            get_event_storage().put_scalars(**{f"iou_balanced/{k}": v for k, v in scalars.items()})
        return sampled

    def _sample_proposals(
        self, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            matched_idxs: (R,) the matched ground-truth index of each proposal.
            matched_labels: (R,) the matcher's label (0 background, -1 ignore, 1 foreground).
            gt_classes: (G,) the classes of the image's ground-truth boxes.

        Returns:
            (S,) indices of the sampled proposals (positives first) and (S,) their class labels, in
            [0, num_classes) or num_classes for background.
        """
        assert self._pending_ious, "_sample_proposals runs inside label_and_sample_proposals, after the matcher"
        ious = self._pending_ious.pop(0)
        assert ious.shape == matched_idxs.shape, (tuple(ious.shape), tuple(matched_idxs.shape))
        labels = proposal_class_labels(matched_idxs, matched_labels, gt_classes, self.num_classes)
        options = dict(num_bins=self.num_bins, iou_high=self.iou_high, floor_thr=self.floor_thr)
        pos_idx, neg_idx = subsample_labels_iou_balanced(
            labels, ious, self.batch_size_per_image, self.positive_fraction, self.num_classes,
            floor_fraction=self.floor_fraction, positive_sampling=self.positive_sampling,
            gt_index=matched_idxs, **options,
        )
        self._bin_counts.append(negative_bin_counts(ious, labels == self.num_classes, neg_idx, **options))
        sampled_idxs = torch.cat([pos_idx, neg_idx], dim=0)
        return sampled_idxs, labels[sampled_idxs]
