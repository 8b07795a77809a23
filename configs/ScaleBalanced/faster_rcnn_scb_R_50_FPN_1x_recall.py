"""The paper's recall by size (Tables 3-9) of faster_rcnn_scb_R_50_FPN_1x.py checkpoints, and of the
baseline's (FasterRCNN-SCB's inference is Faster R-CNN's). Use with --eval-only; see
projects/ScaleBalanced/README.md.

The protocol's class-wise NMS 0.45 acts alone on the second stage's candidates, so the box predictor's
NMS is off, its score threshold is the lowest protocol threshold and nothing is capped (the RPN keeps
its proposal NMS: proposals are how Faster R-CNN makes candidates); RecallBySizeEvaluator then
thresholds, applies NMS 0.45, keeps the top 200 per image and checks these settings. No COCO AP here:
AP needs the model's NMS (evaluate it with faster_rcnn_scb_R_50_FPN_1x.py).
"""
from detectron2.config import LazyCall as L

from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator

from .faster_rcnn_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_predictor.test_score_thresh = 0.01  # the lowest protocol threshold
model.roi_heads.box_predictor.test_nms_thresh = 1.0  # NMS off: no IoU exceeds 1
model.roi_heads.box_predictor.test_topk_per_image = 80000  # no cap: 1000 test proposals x 80 classes

dataloader.evaluator = L(RecallBySizeEvaluator)(
    dataset_name="${..test.dataset.names}",
    size_by="original",  # box areas in the dataset's image, as COCO; "input": in the network's input
    model_score_thresh="${...model.roi_heads.box_predictor.test_score_thresh}",
    model_nms_thresh="${...model.roi_heads.box_predictor.test_nms_thresh}",
    model_max_dets="${...model.roi_heads.box_predictor.test_topk_per_image}",
)
train.output_dir = "./output/faster_rcnn_scb_R_50_FPN_1x_recall"
