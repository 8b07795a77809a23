"""How many anchors each ground truth is matched to: the "matching imbalance" histograms of the
scale-balanced loss paper (Figs. 1 and 3), for any detectron2 RetinaNet-like or RPN-based detector and
for SSD (d2imbalance.modeling.SSD, the paper's own detector).

The matching is the model's own: its anchor generator and matcher (``anchor_matcher``; for an R-CNN,
``proposal_generator.anchor_matcher``; for SSD its forced best-prior matching, ``match_priors``),
applied to the ground truths resized as the config's test mapper resizes images. M counts the positive anchors assigned to each object over all levels, forced
low-quality matches included, as in training. Feature-map sizes are derived from the backbone strides
and the padded image size (ceil(padded / stride)), so no image is loaded and no network is run.
Size classes use the box area in the network's input (after that resize), as the scale-balanced
training statistics (``scb/mean_M_*``) do; ``size_by="original"`` uses the dataset image's area. Bounds as
:mod:`d2imbalance.evaluation.size_classes` (small <= 32², medium <= 96²).
"""
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._compat import require_detectron2
from ..evaluation.size_classes import SIZE_NAMES, box_areas, size_index
from ..modeling.ssd_ops import match_priors

require_detectron2("d2imbalance.analysis.anchor_matches")

from detectron2.data.transforms import ResizeShortestEdge  # noqa: E402
from detectron2.modeling.meta_arch.dense_detector import DenseDetector  # noqa: E402
from detectron2.structures import Boxes, BoxMode, pairwise_iou  # noqa: E402

__all__ = [
    "SIZE_NAMES",
    "anchor_matching_parts",
    "count_matches",
    "match_histogram",
    "format_histogram",
    "save_histogram_png",
]


class SSDMatcher:
    """SSD's matching (each ground truth's best prior forced, then IoU >= threshold) with the output of
    detectron2's ``Matcher``: (matched index per prior, label 1 positive / 0 background)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        matched = match_priors(iou, self.threshold)
        return matched.clamp(min=0), (matched >= 0).to(torch.int8)


def anchor_matching_parts(model) -> Tuple[object, object, List[str]]:
    """(anchor_generator, matcher, feature names) of a RetinaNet-like model, an SSD (a dense detector
    with ``iou_threshold`` and no ``anchor_matcher``) or an R-CNN's RPN.

    Raises:
        ValueError: when the model has none of them.
    """
    if isinstance(model, DenseDetector) and hasattr(model, "iou_threshold") and not hasattr(model, "anchor_matcher"):
        return model.anchor_generator, SSDMatcher(model.iou_threshold), list(model.head_in_features)
    if hasattr(model, "anchor_generator") and hasattr(model, "anchor_matcher"):
        return model.anchor_generator, model.anchor_matcher, list(model.head_in_features)
    rpn = getattr(model, "proposal_generator", None)
    if rpn is not None and hasattr(rpn, "anchor_generator") and hasattr(rpn, "anchor_matcher"):
        return rpn.anchor_generator, rpn.anchor_matcher, list(rpn.in_features)
    raise ValueError(
        f"{type(model).__name__} has no anchor matching to analyse: expected a RetinaNet-like model "
        "(anchor_generator, anchor_matcher, head_in_features) or an R-CNN with an RPN."
    )


def _anchors_for(model, anchor_generator, in_features, padded_hw, cache) -> Boxes:
    if padded_hw not in cache:
        shapes = model.backbone.output_shape()
        feats = [
            torch.empty(1, 1, math.ceil(padded_hw[0] / shapes[f].stride), math.ceil(padded_hw[1] / shapes[f].stride))
            for f in in_features
        ]
        cache[padded_hw] = Boxes.cat(anchor_generator(feats))
    return cache[padded_hw]


@torch.no_grad()
def count_matches(
    model,
    dataset_dicts: Iterable[dict],
    *,
    short_edge: Optional[int] = None,
    max_size: int = 10**9,
    resize_to: Optional[Tuple[int, int]] = None,
    size_by: str = "input",
) -> Tuple[np.ndarray, np.ndarray]:
    """Match counts and box areas of every non-crowd ground truth.

    Args:
        model: a built detectron2 model (RetinaNet-like or with an RPN).
        dataset_dicts: detectron2 dataset dicts (height, width, annotations with bbox, bbox_mode).
        short_edge, max_size: the ResizeShortestEdge applied before the network (None: no resize).
        resize_to: (height, width) of a fixed Resize before the network (SSD's 300x300); it replaces
            ``short_edge``.
        size_by: "input": areas of the boxes as matched, after the resize (as the training
            statistics); "original": areas in the dataset's image.

    Returns:
        counts (G,) int64 M per ground truth, areas (G,) float box areas.
    """
    if size_by not in ("input", "original"):
        raise ValueError(f"size_by={size_by!r} must be 'input' (as the training statistics) or 'original'.")
    anchor_generator, matcher, in_features = anchor_matching_parts(model)
    div = max(model.backbone.size_divisibility, 1)  # 0: no padding
    square = model.backbone.padding_constraints.get("square_size", 0)  # SSD pads every image to it
    cache: Dict[Tuple[int, int], Boxes] = {}
    counts, areas = [], []
    for d in dataset_dicts:
        annos = [a for a in d.get("annotations", []) if a.get("iscrowd", 0) == 0]
        if not annos:
            continue
        boxes = torch.tensor(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos], dtype=torch.float32
        ).reshape(-1, 4)
        h, w = d["height"], d["width"]
        original_areas = box_areas(boxes)
        if resize_to is not None or short_edge is not None:
            nh, nw = resize_to or ResizeShortestEdge.get_output_shape(h, w, short_edge, max_size)
            boxes = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h])
            h, w = nh, nw
        areas.append((box_areas(boxes) if size_by == "input" else original_areas).numpy())
        padded = (square, square) if square else (int(math.ceil(h / div) * div), int(math.ceil(w / div) * div))
        anchors = _anchors_for(model, anchor_generator, in_features, padded, cache)
        matched_idxs, labels = matcher(pairwise_iou(Boxes(boxes), anchors))
        m = torch.zeros(len(boxes), dtype=torch.int64).scatter_add_(0, matched_idxs, (labels == 1).long())
        counts.append(m.numpy())
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(counts), np.concatenate(areas)


def match_histogram(counts: np.ndarray, areas: np.ndarray, max_bin: int = 20) -> Dict[str, np.ndarray]:
    """Histograms of match counts with bins 0, 1, ..., max_bin-1 and ">= max_bin".

    Returns:
        {"all": (max_bin+1,), "small": ..., "medium": ..., "large": ...} int64 object counts.
    """
    if max_bin < 1:
        raise ValueError(f"max_bin={max_bin} must be >= 1.")
    binned = np.minimum(np.asarray(counts, dtype=np.int64), max_bin)
    size = size_index(torch.as_tensor(np.asarray(areas, dtype=np.float64))).numpy()
    hist = {"all": np.bincount(binned, minlength=max_bin + 1)}
    for i, name in enumerate(SIZE_NAMES):
        hist[name] = np.bincount(binned[size == i], minlength=max_bin + 1)
    return hist


def _bin_labels(max_bin: int) -> List[str]:
    return [str(i) for i in range(max_bin)] + [f">={max_bin}"]


def format_histogram(hist: Dict[str, np.ndarray]) -> str:
    """Text table: one row per bin (0, 1, ..., >=N), one column per group (all, small, medium, large)."""
    names = list(hist)
    labels = _bin_labels(len(hist["all"]) - 1)
    rows = ["| matched anchors | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for b, label in enumerate(labels):
        rows.append(f"| {label} | " + " | ".join(str(int(hist[n][b])) for n in names) + " |")
    rows.append("| total | " + " | ".join(str(int(hist[n].sum())) for n in names) + " |")
    return "\n".join(rows)


def save_histogram_png(hist: Dict[str, np.ndarray], path: str, title: str = "") -> None:
    """Bar chart of the histogram, stacked by size class (paper Figs. 1 and 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _bin_labels(len(hist["all"]) - 1)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(labels)), 4.0))
    bottom = np.zeros(len(labels))
    for name, color in zip(SIZE_NAMES, ("tab:blue", "tab:orange", "tab:green")):
        ax.bar(x, hist[name], bottom=bottom, label=f"{name} ({int(hist[name].sum())})", color=color)
        bottom += hist[name]
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 15 else 0)
    ax.set_xlabel("anchors matched per object (M)")
    ax.set_ylabel("objects")
    ax.set_title(title or "Anchor matches per ground truth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fixed_resize_from_config(cfg) -> Optional[Tuple[int, int]]:
    """(height, width) of the first fixed ``Resize`` in ``cfg.dataloader.test.mapper`` (SSD), else None."""
    for aug in cfg.dataloader.test.mapper.get("augmentations", []) if "test" in cfg.dataloader else []:
        target = aug.get("_target_") if hasattr(aug, "get") else None
        if getattr(target, "__name__", str(target)).split(".")[-1] == "Resize":
            height, width = aug.get("shape")
            return int(height), int(width)
    return None


def resize_from_config(cfg) -> Tuple[Optional[int], int]:
    """(short_edge, max_size) of the first ResizeShortestEdge in ``cfg.dataloader.test.mapper``.

    A tuple of short edges (multi-scale) gives its largest value. (None, 0) when there is none.
    """
    augs = cfg.dataloader.test.mapper.get("augmentations", []) if "test" in cfg.dataloader else []
    for aug in augs:
        target = aug.get("_target_") if hasattr(aug, "get") else None
        name = getattr(target, "__name__", str(target))
        if name.endswith("ResizeShortestEdge"):
            short = aug.get("short_edge_length")
            if isinstance(short, Sequence) and not isinstance(short, str):
                short = max(short)
            return int(short), int(aug.get("max_size", 10**9))
    return None, 10**9
