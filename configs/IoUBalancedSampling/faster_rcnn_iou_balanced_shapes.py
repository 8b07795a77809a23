"""Faster R-CNN with IoU-balanced negatives on the synthetic shapes dataset, small enough for 2 CPU cores.

The CPU demo: configs/Baselines/faster_rcnn_shapes.py (ResNet-18 from scratch, 64-channel FPN, 128 ROIs
per image) with the same changes as faster_rcnn_iou_balanced_R_50_FPN_1x.py.
"""
from iou_balanced import IoUBalancedROIHeads

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = IoUBalancedROIHeads
model.roi_heads.num_bins = 3
model.roi_heads.bin_range = "negatives"
model.roi_heads.floor_thr = None
model.roi_heads.floor_fraction = 0.0
model.roi_heads.positive_sampling = "random"

train.output_dir = "./output/faster_rcnn_iou_balanced_shapes"
