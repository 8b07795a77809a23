"""Faster R-CNN trained with online hard example mining on the synthetic shapes dataset, small enough for
2 CPU cores.

The CPU demo: configs/Baselines/faster_rcnn_shapes.py (ResNet-18 from scratch, 64-channel FPN, 500
proposals and 128 ROIs per image in training) with the same changes as faster_rcnn_ohem_R_50_FPN_1x.py:
the 128 hardest of all the proposals per image, after an NMS at 0.7 by loss.
"""
from ohem import OHEMROIHeads

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = OHEMROIHeads
model.roi_heads.positive_fraction = None
model.roi_heads.selection_nms_thresh = 0.7
model.roi_heads.selection_nms_per_label = False
model.roi_heads.selection_loss = "cls_box"

train.output_dir = "./output/faster_rcnn_ohem_shapes"
