"""COCO's object size classes by box area, one definition for the recall-by-size evaluator, the
anchor-match histograms and the scale-balanced training statistics (pure torch, no detectron2).

COCO's ``areaRng`` is small [0, 32²], medium [32², 96²], large [96², ∞), every bound inclusive, so
COCOeval counts an object of area exactly 32² (or 96²) in two classes. Here the classes partition the
objects with COCO's inclusive upper bounds: small ≤ 32² (the scale-balanced paper's "≤ 32×32"),
32² < medium ≤ 96², large > 96². The paper's recall tables count each object once (Table 3: 516 +
3813 + 7703 objects, one total for every row).
"""
import torch
from torch import Tensor

__all__ = ["SIZE_NAMES", "AREA_BOUNDS", "size_index", "box_areas"]

SIZE_NAMES = ("small", "medium", "large")
AREA_BOUNDS = (32.0**2, 96.0**2)  # inclusive upper bounds of small and medium, px²


def size_index(areas: Tensor) -> Tensor:
    """0 small / 1 medium / 2 large for a (G,) tensor of box areas: (G,) int64."""
    # right=False: index i with bounds[i-1] < area <= bounds[i], so each upper bound is inclusive.
    return torch.bucketize(areas, areas.new_tensor(AREA_BOUNDS), right=False)


def box_areas(boxes_xyxy: Tensor) -> Tensor:
    """(G,) areas w·h of (G, 4) XYXY boxes (0 for degenerate boxes)."""
    wh = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]
