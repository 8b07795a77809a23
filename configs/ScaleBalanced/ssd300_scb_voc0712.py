"""SSD300-SCB on Pascal VOC 07+12, tested on VOC07 (paper Table 2: SSD300 77.2 -> 78.2 mAP; Table 3:
small-object recall at 0.3 17.44 -> 42.83). configs/Baselines/ssd300_voc0712.py (the Caffe recipe) with
the scale-balanced loss as the authors' code applies it: W = 3(ln M + 1)/M on the classification loss
of positive priors, M counted on SSD's matching (forced best prior included), box loss unweighted,
both divided by the number of positives.

Evaluated with VOC07 11-point mAP and the paper's recall by size (thresholds 0.01 / 0.1 / 0.3, NMS
0.45, top 200, sizes measured in the 300x300 input as §3.1). SSD's own inference is that NMS and top
200, which the recall evaluator accepts as the protocol's.
"""
from scale_balanced import SSDSCB

from ..Baselines.ssd300_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB
model.weighting_form = "scale_balanced"  # Eq. 3; Table 1 forms: ssd300_scb_voc0712_w_*.py
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False  # the authors' code; True weights the smooth-L1 of positives too
train.output_dir = "./output/ssd300_scb_voc0712"
