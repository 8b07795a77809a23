"""The ROI box head's features of many RoIs, a bounded number at a time.

detectron2's ``StandardROIHeads._forward_box`` pools and runs the box head over every RoI of the batch at
once, so its memory grows with the RoIs: the pooled C x 7 x 7 features and the fc activations of each
(~57 KB per RoI for the FPN head) are kept for the backward pass. Heads that see every proposal instead
of a sample of 512 per image (OHEM's readonly pass, Sampling-Free Faster R-CNN) need twice as many RoIs
or more; :func:`box_head_features` runs the pooler and the head in chunks of RoIs of one image, and with
``recompute=True`` keeps no activation of the chunks: autograd recomputes each chunk's forward in the
backward pass (activation checkpointing), one chunk at a time.

The box head treats each RoI on its own (detectron2's FastRCNNConvFCHead has no batch statistics), so
the features are those of one pass over all RoIs. A box head with BatchNorm would see other batches.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from d2imbalance._compat import require_detectron2

require_detectron2("d2imbalance.modeling.roi_box_features")
from detectron2.structures import Boxes  # noqa: E402

__all__ = ["box_head_features"]


def box_head_features(
    box_pooler: nn.Module,
    box_head: nn.Module,
    feature_maps: Sequence[Tensor],
    boxes_per_image: Sequence[Boxes],
    chunk_size: Optional[int] = None,
    recompute: bool = False,
) -> Tensor:
    """``box_head(box_pooler(feature_maps, boxes_per_image))``, computed in chunks.

    Args:
        box_pooler, box_head: a ROIPooler and a box head (``StandardROIHeads.box_pooler`` / ``box_head``).
        feature_maps: the pooler's L feature maps, (N, C, Hl, Wl) each.
        boxes_per_image: N Boxes, the RoIs of each image.
        chunk_size: RoIs per chunk, each chunk within one image. None: one pass over all RoIs.
        recompute: keep no activation of the pooler and head for the backward pass; recompute them there,
            chunk by chunk (``torch.utils.checkpoint``). Costs a second forward of both in training; gives
            the same features and gradients. Needs ``chunk_size``: a single checkpointed pass would
            recompute every RoI at once, which saves nothing at the peak.

    Returns:
        (R, D) the box head's features of all RoIs, in the order of ``boxes_per_image``.
    """
    if chunk_size is None:
        if recompute:
            raise ValueError("recompute=True needs a chunk_size (RoIs per chunk), e.g. 512.")
        return box_head(box_pooler(list(feature_maps), list(boxes_per_image)))
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int (RoIs per chunk) or None (one pass).")

    def run(boxes: Tensor, *image_maps: Tensor) -> Tensor:
        return box_head(box_pooler(list(image_maps), [Boxes(boxes)]))

    parts: List[Tensor] = []
    for i, boxes in enumerate(boxes_per_image):
        image_maps = [x[i : i + 1] for x in feature_maps]
        for start in range(0, len(boxes), chunk_size):
            part = boxes.tensor[start : start + chunk_size]
            if recompute and torch.is_grad_enabled():
                parts.append(checkpoint(run, part, *image_maps, use_reentrant=False))
            else:
                parts.append(run(part, *image_maps))
    if not parts:  # no RoI at all: the head's output width from an empty pass
        return box_head(box_pooler(list(feature_maps), list(boxes_per_image)))
    return torch.cat(parts)
