"""RetinaNet-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/retinanet_shapes.py
with the scale-balanced loss of retinanet_scb_R_50_FPN_1x.py, evaluated with COCO AP and recall by
size (for the paper's recall protocol add model.test_score_thresh=0.01 model.max_detections_per_image=200
to both this and the baseline run; see projects/ScaleBalanced/README.md).
"""
from detectron2.config import LazyCall as L

from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator
from scale_balanced import RetinaNetSCB

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetSCB
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
model.normalize_by = "num_pos"

# Inside a list "${..}" refers to the list itself: "${...}" reaches dataloader.
_coco_evaluator = dataloader.evaluator
_coco_evaluator.dataset_name = "${...test.dataset.names}"
dataloader.evaluator = [_coco_evaluator, L(RecallBySizeEvaluator)(dataset_name="${...test.dataset.names}")]
train.output_dir = "./output/retinanet_scb_shapes"
