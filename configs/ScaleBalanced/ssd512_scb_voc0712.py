"""SSD512-SCB on Pascal VOC 07+12: configs/Baselines/ssd512_voc0712.py with the scale-balanced loss of
ssd300_scb_voc0712.py (VOC07 mAP and the recall by size in the 512x512 input)."""
from scale_balanced import SSDSCB

from ..Baselines.ssd512_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB  # W = 3(ln M + 1)/M on positives' classification loss, as ssd300_scb_voc0712.py
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/ssd512_scb_voc0712"
