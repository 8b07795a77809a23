"""SSD300-SCB on COCO (paper Table 5: SSD300 25.1 -> 26.6 AP on test-dev; Tables 6-7: recall by size):
configs/Baselines/ssd300_coco.py with the scale-balanced loss of ssd300_scb_voc0712.py."""
from scale_balanced import SSDSCB

from ..Baselines.ssd300_coco import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB  # W = 3(ln M + 1)/M on positives' classification loss, as ssd300_scb_voc0712.py
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/ssd300_scb_coco"
