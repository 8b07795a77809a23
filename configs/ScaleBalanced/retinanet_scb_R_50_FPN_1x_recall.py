"""The paper's recall by size (Tables 3-9) of retinanet_scb_R_50_FPN_1x.py checkpoints, and of the
baseline's (RetinaNet-SCB's inference is RetinaNet's). Use with --eval-only; see
projects/ScaleBalanced/README.md.

The protocol's class-wise NMS 0.45 acts alone on the model's candidates, so the model's NMS is off,
its score threshold is the lowest protocol threshold and nothing is capped; RecallBySizeEvaluator then
thresholds, applies NMS 0.45, keeps the top 200 per image and checks these settings. No COCO AP here:
AP needs the model's NMS (evaluate it with retinanet_scb_R_50_FPN_1x.py).
"""
from detectron2.config import LazyCall as L

from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator

from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.test_score_thresh = 0.01  # the lowest protocol threshold
model.test_nms_thresh = 1.0  # NMS off: no IoU exceeds 1
model.test_topk_candidates = 1000  # RetinaNet's candidates per level, before NMS
model.max_detections_per_image = 5000  # no cap: 1000 candidates x 5 levels

dataloader.evaluator = L(RecallBySizeEvaluator)(
    dataset_name="${..test.dataset.names}",
    size_by="original",  # box areas in the dataset's image, as COCO; "input": in the network's input
    model_score_thresh="${...model.test_score_thresh}",
    model_nms_thresh="${...model.test_nms_thresh}",
    model_max_dets="${...model.max_detections_per_image}",
)
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_recall"
