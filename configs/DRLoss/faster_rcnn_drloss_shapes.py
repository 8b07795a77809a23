"""Faster R-CNN with the DR loss in the ROI head on the synthetic shapes dataset, small enough for 2 CPU
cores.

The CPU demo: configs/Baselines/faster_rcnn_shapes.py (ResNet-18 from scratch, 64-channel FPN, 128 RoIs
per image) with the same changes as faster_rcnn_drloss_R_50_FPN_1x.py.
"""
import math

from drloss import DRFastRCNNOutputLayers, DRROIHeads

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = DRROIHeads
model.roi_heads.box_predictor._target_ = DRFastRCNNOutputLayers
model.roi_heads.box_predictor.pos_lambda = 1.0
model.roi_heads.box_predictor.neg_lambda = 0.1 / math.log(3.5)
model.roi_heads.box_predictor.margin = 0.5
model.roi_heads.box_predictor.logistic_scale = 6.0
model.roi_heads.box_predictor.cls_loss_weight = 4.0
model.roi_heads.box_predictor.scope = "image"
model.roi_heads.box_predictor.class_grouping = "pooled"

train.output_dir = "./output/faster_rcnn_drloss_shapes"
