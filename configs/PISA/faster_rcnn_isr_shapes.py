"""Faster R-CNN with PISA's ISR on the synthetic shapes dataset, small enough for 2 CPU cores.

The CPU demo: configs/Baselines/faster_rcnn_shapes.py (ResNet-18 from scratch, 64-channel FPN, 128 RoIs
per image) with the same changes as faster_rcnn_isr_R_50_FPN_1x.py.
"""
from pisa import ISRFastRCNNOutputLayers, ISRROIHeads

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = ISRROIHeads
model.roi_heads.negative_sampling = "random"
model.roi_heads.box_predictor._target_ = ISRFastRCNNOutputLayers
model.roi_heads.box_predictor.positive_gamma = 2.0
model.roi_heads.box_predictor.positive_beta = 0.0
model.roi_heads.box_predictor.negative_gamma = 0.5
model.roi_heads.box_predictor.negative_beta = 0.0
model.roi_heads.box_predictor.positive_iou = "proposal"
model.roi_heads.box_predictor.positive_nms_threshold = None
model.roi_heads.box_predictor.negative_nms_threshold = 0.5
model.roi_heads.box_predictor.carl = False

train.output_dir = "./output/faster_rcnn_isr_shapes"
