"""OHEM as mmdetection's OHEMSampler selects (configs/faster_rcnn/faster-rcnn_r50_fpn_ohem_1x_coco.py:
512 ROIs per image, pos_fraction 0.25), the setting the review measured (papers/001, Table 1), on the
COCO 1x recipe.

Where it differs from faster_rcnn_ohem_R_50_FPN_1x.py (the paper's text):
- no NMS among the RoIs;
- the RoIs are ranked by their classification loss alone;
- at most int(512 * 0.25) = 128 positives per image, the hardest, and the hardest negatives fill the
  rest (the sampler keeps the foreground ratio of the random sampling it replaces).
"""
from .faster_rcnn_ohem_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.positive_fraction = 0.25
model.roi_heads.selection_nms_thresh = None
model.roi_heads.selection_loss = "cls"

train.output_dir = "./output/faster_rcnn_ohem_mmdetection_R_50_FPN_1x"
