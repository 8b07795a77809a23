"""The scale-balanced paper's recall by size (Tables 3-9) beside a config's own evaluator, for SSD-family
models (the shared RecallBySizeEvaluator; RetinaNet and Faster R-CNN need their NMS off for it, see
configs/ScaleBalanced/*_recall.py).

SSD's inference (score > 0.01, class-wise NMS 0.45, top 200) is the protocol's NMS and top-k, so its
outputs are the protocol's input (RecallBySizeEvaluator checks the settings it is given).
"""
from detectron2.config import LazyCall as L

from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator


def with_recall_by_size(evaluator, size_by: str):
    """[evaluator, RecallBySizeEvaluator] on the same dataset; ``size_by``: "input" (sizes in the
    network input, the paper's §3.1 for VOC) or "original" (in the dataset's image, as COCO)."""
    evaluator.dataset_name = "${...test.dataset.names}"  # one level deeper inside the list
    return [
        evaluator,
        L(RecallBySizeEvaluator)(
            dataset_name="${...test.dataset.names}",
            size_by=size_by,
            model_score_thresh="${....model.test_score_thresh}",
            model_nms_thresh="${....model.test_nms_thresh}",
            model_max_dets="${....model.max_detections_per_image}",
        ),
    ]
