"""The ROI heads of Sampling-Free Faster R-CNN: every labelled proposal in the losses, no sampling. The
method's changes to the losses and inference (Eqs. 4-7) are the box predictor's,
:class:`sampling_free.fast_rcnn.SamplingFreeOutputLayers`."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from d2imbalance._compat import require_detectron2
from d2imbalance.modeling.proposal_labels import label_all_proposals

from .core import HYPERPARAMETERS

require_detectron2("sampling_free.roi_heads")
from d2imbalance.modeling.roi_box_features import box_head_features  # noqa: E402
from detectron2.config import configurable  # noqa: E402
from detectron2.modeling import StandardROIHeads  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from .fast_rcnn import SamplingFreeOutputLayers  # noqa: E402

__all__ = ["SamplingFreeROIHeads"]


class SamplingFreeROIHeads(StandardROIHeads):
    """StandardROIHeads trained on every proposal, with a :class:`SamplingFreeOutputLayers` box predictor.

    - No sampling: every proposal the matcher does not ignore (with the ground-truth boxes appended, as
      detectron2 does) is labelled and enters the box head's losses (``_sample_proposals``).
    - Statistics: the labels of each training batch go to the predictor
      (:meth:`SamplingFreeOutputLayers.count_proposal_labels`) before the box head runs, for the
      first-batch bias (Eq. 4) and the thresholds (Eq. 7). The losses and inference are the predictor's.
    - Optional, not part of the method: ``box_head_recompute_chunk`` recomputes the box head's
      activations in the backward pass (``_forward_box``).

    Mask and keypoint heads, if any, see every foreground proposal (detectron2 selects the foreground
    among the labelled proposals).
    """

    HYPERPARAMETERS = HYPERPARAMETERS  # the sampling (512, 0.25) is gone; nothing replaces it

    @configurable
    def __init__(self, *, box_head_recompute_chunk: Optional[int] = None, **kwargs):
        """
        Args:
            box_head_recompute_chunk: None: detectron2's box stage, which keeps the activations of every
                RoI for the backward pass (~57 KB each for the FPN head, and there are ~2x the sampled
                baseline's RoIs). An int: in training, the pooler and box head run in chunks of that many
                RoIs per image and their activations are recomputed in the backward pass, one chunk at a
                time (:func:`d2imbalance.modeling.roi_box_features.box_head_features`): same losses and
                gradients, the memory of one chunk, a second forward of the box head. Not a method
                setting; a memory / time trade-off.
            kwargs: :class:`StandardROIHeads` arguments. ``box_predictor`` must be a
                :class:`SamplingFreeOutputLayers`; ``batch_size_per_image`` is then only the predictor's
                loss normaliser (``loss_rois_per_image``) and ``positive_fraction`` is unused.
        """
        super().__init__(**kwargs)
        if not isinstance(self.box_predictor, SamplingFreeOutputLayers):
            raise ValueError(
                f"box_predictor is a {type(self.box_predictor).__name__}; SamplingFreeROIHeads needs the "
                "Sampling-Free predictor (bias, guided loss, thresholds): set box_predictor._target_ to "
                "sampling_free.SamplingFreeOutputLayers and box_predictor.loss_rois_per_image to "
                "'${..batch_size_per_image}'."
            )
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
        then the labels to the predictor's statistics (and, on the first batch that allows it, its bias)."""
        proposals = super().label_and_sample_proposals(proposals, targets)
        labels = torch.cat([p.gt_classes for p in proposals])
        get_event_storage().put_scalar("sampling_free/roi_num_samples", len(labels) / len(proposals))
        self.box_predictor.count_proposal_labels(labels)
        return proposals

    def _forward_box(self, features: Dict[str, Tensor], proposals: List[Instances]):
        """detectron2's, except in training with ``box_head_recompute_chunk``: the box features of all RoIs
        from :func:`box_head_features` (chunked, recomputed in the backward pass), then the predictor's
        losses."""
        if not (self.training and self.box_head_recompute_chunk is not None):
            return super()._forward_box(features, proposals)
        box_features = box_head_features(
            self.box_pooler, self.box_head, [features[f] for f in self.box_in_features],
            [p.proposal_boxes for p in proposals], self.box_head_recompute_chunk, recompute=True,
        )  # fmt: skip
        return self.box_predictor.losses(self.box_predictor(box_features), proposals)
