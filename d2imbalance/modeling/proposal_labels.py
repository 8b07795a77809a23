"""The class label of each ROI proposal, as detectron2's ``ROIHeads._sample_proposals`` sets it before
sampling, and the "keep every labelled proposal" rule of the heads that do not sample (OHEM selects among
them afterwards, Sampling-Free trains on all of them).

Pure torch; imports without detectron2.
"""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["label_all_proposals", "proposal_class_labels"]


def proposal_class_labels(matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor, num_classes: int) -> Tensor:
    """
    Args:
        matched_idxs: (R,) the matched ground-truth index of each proposal.
        matched_labels: (R,) the matcher's label (1 foreground, 0 background, -1 ignore).
        gt_classes: (G,) the classes of the image's ground-truth boxes (G may be 0).
        num_classes: C; label C is the background.

    Returns:
        (R,) labels: the matched box's class for a foreground proposal, C for a background one, -1 for an
        ignored one. Without ground truth every proposal is background.
    """
    if gt_classes.numel() == 0:
        return torch.full_like(matched_idxs, num_classes)
    labels = gt_classes[matched_idxs]
    labels[matched_labels == 0] = num_classes
    labels[matched_labels == -1] = -1
    return labels


def label_all_proposals(
    matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor, num_classes: int
) -> Tuple[Tensor, Tensor]:
    """Every proposal the matcher does not ignore, with its label: no sampling.

    Returns:
        (S,) indices of the kept proposals, ascending, and (S,) their labels in [0, C].
    """
    labels = proposal_class_labels(matched_idxs, matched_labels, gt_classes, num_classes)
    keep = torch.nonzero(labels >= 0, as_tuple=True)[0]
    return keep, labels[keep]
