"""Faster R-CNN with IoU-balanced negatives in the ROI heads, ResNet-50-FPN, 1x on COCO (Pang et al.,
Libra R-CNN, CVPR 2019, §3.1).

The baseline's recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py: 16 images, lr 0.02, 90k
iterations) with the 512 ROIs per image (25 % foreground) drawn as the paper describes: the negatives'
IoU interval [0, 0.5) split into K = 3 bins, an equal share of the negatives from each, positives drawn
at random as in the baseline. The authors' mmdetection settings: faster_rcnn_iou_balanced_official_R_50_FPN_1x.py.
"""
from iou_balanced import IoUBalancedROIHeads

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = IoUBalancedROIHeads
model.roi_heads.num_bins = 3  # K (Eq. 2: p_k = N/K * 1/M_k)
model.roi_heads.bin_range = "negatives"  # [0, 0.5), the background interval of the matcher (the paper)
model.roi_heads.floor_thr = None  # no floor (the paper); the authors' code runs as 0.0 (official config)
model.roi_heads.floor_fraction = 0.0
model.roi_heads.positive_sampling = "random"  # the baseline's; "instance_balanced" in the authors' config

train.trained_checkpoint = ""  # no detectron2 weights for this model
train.output_dir = "./output/faster_rcnn_iou_balanced_R_50_FPN_1x"
