"""Recall of small / medium / large objects at confidence thresholds (scale-balanced loss paper,
§4.1.3 and Tables 3-9), as a detectron2 DatasetEvaluator usable with any detector.

Protocol (paper §4.1.3): for each confidence threshold t (0.01, 0.1, 0.3), detections with score < t are
discarded, class-wise NMS at IoU 0.45 is applied and the top 200 per image are kept; a ground truth
counts as recalled when some kept detection overlaps it with IoU >= 0.5. Recall is reported per COCO
size class with counts, e.g. "61.43 (317/516)".

Choices the paper leaves open, as options:
  * ``class_aware`` (default True): the detection must have the ground truth's class.
  * size classes use the ground-truth box area in the original image (w·h; COCO's own AP_S/M/L uses the
    annotation's segment area): small < 32², medium < 96², large otherwise.
  * crowd annotations (iscrowd=1) are not counted, as in COCO evaluation.
  * a detection may recall several ground truths (recall, not a one-to-one matching).
Detections come from the model's output as is: the model's own test-time threshold, NMS and
detections-per-image limit act before this evaluator, so set e.g. RetinaNet's ``test_score_thresh``
at most 0.01 and ``max_detections_per_image`` at least 200 to reproduce the paper's protocol (the
evaluator warns otherwise when it can tell).
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from .._compat import require_detectron2

require_detectron2("d2imbalance.evaluation.recall_by_size")

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.evaluation import DatasetEvaluator  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402
from detectron2.utils import comm  # noqa: E402

__all__ = ["RecallBySizeEvaluator", "recall_hits", "format_recall_table", "SIZE_NAMES"]

logger = logging.getLogger(__name__)

SIZE_NAMES = ("small", "medium", "large")
_AREA_BOUNDS = (32.0**2, 96.0**2)


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
        pred_boxes: (D, 4) XYXY detections; pred_scores (D,); pred_classes (D,) int.
        gt_boxes: (G, 4) XYXY ground truths; gt_classes (G,) int.
        score_thresholds: T thresholds; detections with score < t are dropped before NMS.
        nms_thresh, max_dets: class-wise NMS IoU and detections kept per image after it.
        iou_thresh: a ground truth is recalled by a kept detection with IoU >= this.
        class_aware: require the detection's class to equal the ground truth's.

    Returns:
        (T, G) bool.
    """
    hits = torch.zeros(len(score_thresholds), len(gt_boxes), dtype=torch.bool)
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return hits
    iou = box_iou(gt_boxes.float(), pred_boxes.float())  # (G, D)
    if class_aware:
        iou = iou * (gt_classes[:, None] == pred_classes[None, :])
    for t, thresh in enumerate(score_thresholds):
        keep = torch.nonzero(pred_scores >= thresh).flatten()
        # batched_nms returns indices sorted by decreasing score, so [:max_dets] is the top-k.
        keep = keep[batched_nms(pred_boxes[keep].float(), pred_scores[keep], pred_classes[keep], nms_thresh)]
        keep = keep[:max_dets]
        if len(keep):
            hits[t] = (iou[:, keep] >= iou_thresh).any(dim=1)
    return hits


def size_index(boxes_xyxy: Tensor) -> Tensor:
    """0 small / 1 medium / 2 large for (G, 4) XYXY boxes, by box area."""
    areas = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]).clamp(min=0) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1]).clamp(min=0)
    return torch.bucketize(areas, torch.tensor(_AREA_BOUNDS, dtype=areas.dtype), right=True)


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

    Results: ``{"recall_by_size": {"recall_small@0.01": 73.06, ..., "num_small": 516, ...}}`` (percent),
    and the table is logged. Ground truth comes from ``DatasetCatalog.get(dataset_name)`` (any
    registered dataset in detectron2's format, e.g. a COCO-format JSON registered with
    ``register_coco_instances``), matched to outputs by ``image_id``.
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
            distributed: gather the counts from all processes.
        """
        if not score_thresholds or any(not 0.0 <= t <= 1.0 for t in score_thresholds):
            raise ValueError(f"score_thresholds={score_thresholds} must be non-empty and in [0, 1].")
        self.dataset_name = dataset_name
        self.score_thresholds = tuple(float(t) for t in score_thresholds)
        self.nms_thresh = nms_thresh
        self.max_dets = max_dets
        self.iou_thresh = iou_thresh
        self.class_aware = class_aware
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
        self._recalled = np.zeros((len(self.score_thresholds), len(SIZE_NAMES)), dtype=np.int64)
        self._totals = np.zeros(len(SIZE_NAMES), dtype=np.int64)
        self._max_num_dets = 0
        self._min_score = float("inf")

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
            self._max_num_dets = max(self._max_num_dets, len(inst))
            if len(inst):
                self._min_score = min(self._min_score, inst.scores.min().item())
            hits = recall_hits(
                inst.pred_boxes.tensor, inst.scores, inst.pred_classes, gt_boxes, gt_classes,
                score_thresholds=self.score_thresholds, nms_thresh=self.nms_thresh,
                max_dets=self.max_dets, iou_thresh=self.iou_thresh, class_aware=self.class_aware,
            )
            sizes = size_index(gt_boxes)
            self._totals += np.bincount(sizes.numpy(), minlength=len(SIZE_NAMES))
            for t in range(len(self.score_thresholds)):
                self._recalled[t] += np.bincount(sizes[hits[t]].numpy(), minlength=len(SIZE_NAMES))

    def evaluate(self):
        recalled, totals = self._recalled, self._totals
        if self.distributed:
            comm.synchronize()
            parts = comm.gather((recalled, totals, self._max_num_dets), dst=0)
            if not comm.is_main_process():
                return {}
            recalled = sum(p[0] for p in parts)
            totals = sum(p[1] for p in parts)
            max_num_dets = max(p[2] for p in parts)
        else:
            max_num_dets = self._max_num_dets
        if totals.sum() == 0:
            logger.warning(f"RecallBySizeEvaluator: no ground truth in {self.dataset_name!r}; nothing to report.")
            return {}
        if 0 < max_num_dets < self.max_dets and self._min_score > min(self.score_thresholds):
            logger.warning(
                f"The model returned at most {max_num_dets} detections per image with scores >= "
                f"{self._min_score:.3f}; the recall protocol keeps up to {self.max_dets} down to "
                f"{min(self.score_thresholds)}. Lower the model's test score threshold and raise its "
                "detections-per-image limit to follow the paper's protocol."
            )
        logger.info(
            f"Recall by object size on {self.dataset_name} (class-wise NMS {self.nms_thresh}, top "
            f"{self.max_dets}, IoU >= {self.iou_thresh}):\n"
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
        return OrderedDict(recall_by_size=res)
