"""Recall of small / medium / large objects at confidence thresholds (scale-balanced loss paper,
§4.1.3 and Tables 3-9), as a detectron2 DatasetEvaluator usable with any detector.

Protocol (paper §4.1.3): for each confidence threshold t (0.01, 0.1, 0.3), detections with score < t are
discarded, class-wise NMS at IoU 0.45 is applied and the top 200 per image are kept; a ground truth
counts as recalled when some kept detection overlaps it with IoU >= 0.5. Recall is reported per COCO
size class with counts, e.g. "61.43 (317/516)".

The protocol's NMS 0.45 must act alone, on the model's candidates before any NMS: a model that already
applied its own NMS (detectron2's 0.5) hands over fewer, different boxes. So the model's test-time
post-processing is set for the protocol run (configs/ScaleBalanced/*_recall.py): NMS off
(``test_nms_thresh=1.0``: no IoU exceeds 1), score threshold at most the lowest protocol threshold, and
no detection cap. The evaluator is told these settings (``model_*`` arguments, interpolated from the
config), refuses outputs that passed the model's NMS and warns whenever the model's score threshold
or detection cap cut candidates that a protocol threshold should see.

Choices the paper leaves open, as options:
  * ``class_aware`` (default True): the detection must have the ground truth's class.
  * ``size_by``: size classes by the ground-truth box area (w·h) in the "original" image (default, as
    COCO) or in the network's "input" (after the test-time resize; the paper's Fig. 3 statistics resize
    VOC images to 300). Bounds as :mod:`.size_classes` (small <= 32², medium <= 96²).
  * crowd annotations (iscrowd=1) are not counted, as in COCO evaluation.
  * a detection may recall several ground truths (recall, not a one-to-one matching).
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from .._compat import require_detectron2
from .size_classes import SIZE_NAMES, box_areas, size_index

require_detectron2("d2imbalance.evaluation.recall_by_size")

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.evaluation import DatasetEvaluator  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402
from detectron2.utils import comm  # noqa: E402

__all__ = ["RecallBySizeEvaluator", "recall_hits", "format_recall_table", "SIZE_NAMES", "SIZE_BY"]

logger = logging.getLogger(__name__)

SIZE_BY = ("original", "input")


def recall_hits(
    pred_boxes: Tensor,
    pred_scores: Tensor,
    pred_classes: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    *,
    score_thresholds: Sequence[float] = (0.01, 0.1, 0.3),
    nms_thresh: float = 0.45,
    max_dets: int = 200,
    iou_thresh: float = 0.5,
    class_aware: bool = True,
) -> Tensor:
    """Which ground truths of one image are recalled at each confidence threshold.

    Args:
        pred_boxes: (D, 4) XYXY candidates before NMS; pred_scores (D,); pred_classes (D,) int.
        gt_boxes: (G, 4) XYXY ground truths; gt_classes (G,) int.
        score_thresholds: T thresholds; candidates with score < t are dropped before NMS.
        nms_thresh, max_dets: class-wise NMS IoU and detections kept per image after it.
        iou_thresh: a ground truth is recalled by a kept detection with IoU >= this.
        class_aware: require the detection's class to equal the ground truth's.

    Returns:
        (T, G) bool.
    """
    hits = torch.zeros(len(score_thresholds), len(gt_boxes), dtype=torch.bool)
    if len(gt_boxes) == 0:  # nothing to recall: skip the NMS
        return hits
    iou = box_iou(gt_boxes.float(), pred_boxes.float())  # (G, D)
    if class_aware:
        iou = iou * (gt_classes[:, None] == pred_classes[None, :])
    for t, thresh in enumerate(score_thresholds):
        keep = torch.nonzero(pred_scores >= thresh).flatten()
        # batched_nms returns indices sorted by decreasing score, so [:max_dets] is the top-k.
        keep = keep[batched_nms(pred_boxes[keep].float(), pred_scores[keep], pred_classes[keep], nms_thresh)]
        keep = keep[:max_dets]
        hits[t] = (iou[:, keep] >= iou_thresh).any(dim=1)
    return hits


def format_recall_table(recalled: np.ndarray, totals: np.ndarray, thresholds: Sequence[float]) -> str:
    """Markdown table like the paper's Tables 3-4: one row per threshold, "61.43 (317/516)" cells.

    Args:
        recalled: (T, 3) int counts of recalled ground truths per threshold and size class.
        totals: (3,) int ground truths per size class.
    """
    lines = ["| threshold | " + " | ".join(f"recall_{s}" for s in SIZE_NAMES) + " |",
             "|---|" + "---|" * len(SIZE_NAMES)]
    for t, thresh in enumerate(thresholds):
        cells = [
            f"{100.0 * recalled[t, s] / totals[s]:.2f} ({recalled[t, s]}/{totals[s]})" if totals[s] else "- (0/0)"
            for s in range(len(SIZE_NAMES))
        ]
        lines.append(f"| {thresh:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class RecallBySizeEvaluator(DatasetEvaluator):
    """Recall by object size at confidence thresholds (paper Tables 3-9), for any detector whose
    outputs carry ``instances`` with pred_boxes / scores / pred_classes in original image coordinates.

    Results: ``{"recall_by_size": {"recall_small@0.01": 73.06, ..., "num_small": 516, ...,
    "truncated_images@0.01": 0, ...}}`` (recall in percent; ``truncated_images@t``: images whose
    candidates at threshold t were cut by the model's score threshold or detection cap, 0 when the
    protocol is followed). The table is logged. Ground truth comes from
    ``DatasetCatalog.get(dataset_name)`` (any registered dataset in detectron2's format), matched to
    outputs by ``image_id``.
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        score_thresholds: Sequence[float] = (0.01, 0.1, 0.3),
        nms_thresh: float = 0.45,
        max_dets: int = 200,
        iou_thresh: float = 0.5,
        class_aware: bool = True,
        size_by: str = "original",
        model_score_thresh: Optional[float] = None,
        model_nms_thresh: Optional[float] = None,
        model_max_dets: Optional[int] = None,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset.
            score_thresholds: confidence thresholds (paper: 0.01, 0.1, 0.3).
            nms_thresh: class-wise NMS IoU applied per threshold (paper: 0.45).
            max_dets: detections kept per image after NMS (paper: 200).
            iou_thresh: IoU for a ground truth to count as recalled (paper: 0.5).
            class_aware: a detection recalls only ground truths of its own class.
            size_by: "original" (box area in the dataset's image) or "input" (in the network's
                input, i.e. scaled as the test-time resize scaled the image).
            model_score_thresh, model_nms_thresh, model_max_dets: the model's own test-time score
                threshold, NMS IoU and detections-per-image cap, as configured (None: unknown, and
                the evaluator warns that it cannot check the protocol). A model NMS below 1.0 is
                refused unless it equals ``nms_thresh`` (then the model's NMS and top ``max_dets`` are
                the protocol's own, e.g. SSD's 0.45 and 200): the outputs would already be NMSed.
            distributed: gather the counts from all processes.
        """
        if not score_thresholds or any(not 0.0 <= t <= 1.0 for t in score_thresholds):
            raise ValueError(f"score_thresholds={score_thresholds} must be non-empty and in [0, 1].")
        if size_by not in SIZE_BY:
            raise ValueError(f"size_by={size_by!r} must be one of {SIZE_BY}.")
        if model_nms_thresh is not None and model_nms_thresh < 1.0 and model_nms_thresh != nms_thresh:
            raise ValueError(
                f"The model applies its own NMS (IoU {model_nms_thresh}) before RecallBySizeEvaluator, "
                f"so the protocol's class-wise NMS {nms_thresh} would not act alone. Turn the model's NMS "
                "off for the recall run (test_nms_thresh=1.0 and no detection cap, as in "
                "configs/ScaleBalanced/*_recall.py), or set it to the protocol's."
            )
        # A model whose class-wise NMS is the protocol's (SSD: 0.45, top 200) already returns what the
        # protocol keeps: a box above t is suppressed only by higher-scoring boxes, which are above t
        # too, so thresholding after NMS equals NMS after thresholding; the top-k of a score-filtered
        # list is the filtered top-k; and a second NMS at the same IoU removes nothing.
        self._same_nms = model_nms_thresh is not None and model_nms_thresh == nms_thresh
        self.dataset_name = dataset_name
        self.score_thresholds = tuple(float(t) for t in score_thresholds)
        self.nms_thresh = nms_thresh
        self.max_dets = max_dets
        self.iou_thresh = iou_thresh
        self.class_aware = class_aware
        self.size_by = size_by
        self.model_score_thresh = model_score_thresh
        self.model_nms_thresh = model_nms_thresh
        self.model_max_dets = model_max_dets
        self.distributed = distributed
        self._gt: Optional[Dict] = None
        self.reset()

    def _ground_truth(self) -> Dict:
        if self._gt is None:
            self._gt = {}
            for d in DatasetCatalog.get(self.dataset_name):
                annos = [a for a in d.get("annotations", []) if a.get("iscrowd", 0) == 0]
                boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
                self._gt[d["image_id"]] = (
                    torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    torch.tensor([a["category_id"] for a in annos], dtype=torch.int64),
                )
        return self._gt

    def reset(self):
        num_t = len(self.score_thresholds)
        self._recalled = np.zeros((num_t, len(SIZE_NAMES)), dtype=np.int64)
        self._totals = np.zeros(len(SIZE_NAMES), dtype=np.int64)
        self._capped = np.zeros(num_t, dtype=np.int64)  # images whose candidates at t the cap cut
        self._num_images = 0
        self._max_num_dets = 0
        self._min_score = float("inf")

    def _areas(self, inp: dict, gt_boxes: Tensor) -> Tensor:
        areas = box_areas(gt_boxes)
        if self.size_by == "input":
            if "image" not in inp:
                raise ValueError("size_by='input' needs the model inputs' 'image' (the resized image).")
            h, w = inp["image"].shape[-2:]
            areas = areas * (h / inp["height"]) * (w / inp["width"])
        return areas

    def process(self, inputs: List[dict], outputs: List[dict]):
        gt = self._ground_truth()
        for inp, out in zip(inputs, outputs):
            if inp["image_id"] not in gt:
                raise KeyError(
                    f"image_id {inp['image_id']!r} is not in dataset {self.dataset_name!r}; evaluate "
                    "the evaluator's dataset (check dataloader.test.dataset.names)."
                )
            gt_boxes, gt_classes = gt[inp["image_id"]]
            inst = out["instances"].to("cpu")
            self._num_images += 1
            self._max_num_dets = max(self._max_num_dets, len(inst))
            if len(inst):
                lowest = inst.scores.min().item()
                self._min_score = min(self._min_score, lowest)
                cap_cuts = self.model_max_dets is not None and not (self._same_nms and self.model_max_dets >= self.max_dets)
                if cap_cuts and len(inst) >= self.model_max_dets:
                    # The cap kept the top scores: candidates in [t, lowest) were cut.
                    self._capped += np.array([lowest > t for t in self.score_thresholds])
            hits = recall_hits(
                inst.pred_boxes.tensor, inst.scores, inst.pred_classes, gt_boxes, gt_classes,
                score_thresholds=self.score_thresholds, nms_thresh=self.nms_thresh,
                max_dets=self.max_dets, iou_thresh=self.iou_thresh, class_aware=self.class_aware,
            )
            sizes = size_index(self._areas(inp, gt_boxes))
            self._totals += np.bincount(sizes.numpy(), minlength=len(SIZE_NAMES))
            for t in range(len(self.score_thresholds)):
                self._recalled[t] += np.bincount(sizes[hits[t]].numpy(), minlength=len(SIZE_NAMES))

    def _state(self):
        return self._recalled, self._totals, self._capped, self._num_images, self._max_num_dets, self._min_score

    def evaluate(self):
        if self.distributed:
            comm.synchronize()
            parts = comm.gather(self._state(), dst=0)
            if not comm.is_main_process():
                return {}
        else:
            parts = [self._state()]
        recalled = sum(p[0] for p in parts)
        totals = sum(p[1] for p in parts)
        capped = sum(p[2] for p in parts)
        num_images = sum(p[3] for p in parts)
        max_num_dets = max(p[4] for p in parts)
        min_score = min(p[5] for p in parts)
        if totals.sum() == 0:
            logger.warning(f"RecallBySizeEvaluator: no ground truth in {self.dataset_name!r}; nothing to report.")
            return {}
        truncated = self._check_protocol(capped, num_images, max_num_dets, min_score)
        logger.info(
            f"Recall by object size on {self.dataset_name} (class-wise NMS {self.nms_thresh}, top "
            f"{self.max_dets}, IoU >= {self.iou_thresh}, sizes in the {self.size_by} image):\n"
            + format_recall_table(recalled, totals, self.score_thresholds)
        )
        res = OrderedDict()
        for t, thresh in enumerate(self.score_thresholds):
            for s, name in enumerate(SIZE_NAMES):
                res[f"recall_{name}@{thresh:g}"] = 100.0 * recalled[t, s] / totals[s] if totals[s] else float("nan")
        for s, name in enumerate(SIZE_NAMES):
            res[f"num_{name}"] = int(totals[s])
        for t, thresh in enumerate(self.score_thresholds):
            for s, name in enumerate(SIZE_NAMES):
                res[f"recalled_{name}@{thresh:g}"] = int(recalled[t, s])
        for t, thresh in enumerate(self.score_thresholds):
            res[f"truncated_images@{thresh:g}"] = int(truncated[t])
        return OrderedDict(recall_by_size=res)

    def _check_protocol(self, capped: np.ndarray, num_images: int, max_num_dets: int, min_score: float) -> np.ndarray:
        """Warn for every way the model's own post-processing cut what the protocol should see.

        Returns:
            (T,) images whose candidates at each threshold were cut.
        """
        unknown = [
            name for name, value in (("model_score_thresh", self.model_score_thresh),
                                     ("model_nms_thresh", self.model_nms_thresh),
                                     ("model_max_dets", self.model_max_dets)) if value is None
        ]
        if unknown:
            logger.warning(
                f"RecallBySizeEvaluator was not given {', '.join(unknown)}: it cannot check that the "
                "outputs are the model's candidates before NMS, above the lowest threshold and uncapped, "
                f"as the paper's protocol needs (seen: up to {max_num_dets} detections per image, lowest "
                f"score {min_score:.4f}). Evaluate with a configs/ScaleBalanced/*_recall.py config."
            )
        truncated = capped.copy()
        if self.model_score_thresh is not None:
            cut = np.array([self.model_score_thresh > t for t in self.score_thresholds])
            truncated[cut] = num_images
            if cut.any():
                logger.warning(
                    f"The model's score threshold {self.model_score_thresh} drops candidates that the "
                    f"protocol thresholds {[t for t, c in zip(self.score_thresholds, cut) if c]} should see: "
                    "their recall is underestimated. Set the model's test score threshold to at most "
                    f"{min(self.score_thresholds)}."
                )
        if capped.any():
            logger.warning(
                f"{capped.max()} of {num_images} images returned the model's cap of {self.model_max_dets} "
                f"detections (lowest score returned: {min_score:.4f}), cutting candidates that the protocol "
                f"thresholds {[t for t, c in zip(self.score_thresholds, capped) if c]} should see. Raise the "
                "model's detections-per-image limit."
            )
        return truncated
