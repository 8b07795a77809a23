"""Faster R-CNN trained with online hard example mining in the ROI heads, ResNet-50-FPN, 1x on COCO
(Shrivastava, Gupta, Girshick, CVPR 2016, §4).

The baseline's recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py: 16 images, lr 0.02, 90k iterations)
with the ROI heads trained, per image, on the 512 hardest of all the proposals (the baseline's batch: the
"standard B" of §4.2) after an NMS at IoU 0.7 among them by loss, with no foreground ratio (§4.1). The
authors' Caffe code (NMS within each label): faster_rcnn_ohem_official_R_50_FPN_1x.py; mmdetection's
OHEMSampler, the review's setting: faster_rcnn_ohem_mmdetection_R_50_FPN_1x.py.
"""
from ohem import OHEMROIHeads

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = OHEMROIHeads
# batch_size_per_image (512) is kept: the B/N hardest RoIs per image.
model.roi_heads.positive_fraction = None  # no foreground ratio (§4.1); mmdetection caps positives at 0.25
model.roi_heads.selection_nms_thresh = 0.7  # §4.1; None: no NMS (mmdetection)
model.roi_heads.selection_nms_per_label = False  # NMS over all RoIs of an image; True in the authors' code
model.roi_heads.selection_loss = "cls_box"  # the multi-task loss ranks the RoIs; "cls" in mmdetection

train.trained_checkpoint = ""  # no detectron2 weights for this model
train.output_dir = "./output/faster_rcnn_ohem_R_50_FPN_1x"
