"""DSSD321-SCB on COCO: configs/Baselines/dssd321_coco.py (DSSD321, one end-to-end stage from the
ImageNet R-101) with the scale-balanced loss of ssd300_scb_voc0712.py (DSSD is SSD on another network and
head, so SSDSCB applies unchanged)."""
from scale_balanced import SSDSCB

from ..Baselines.dssd321_coco import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB  # W = 3(ln M + 1)/M on positives' classification loss, as ssd300_scb_voc0712.py
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/dssd321_scb_coco"
