"""DSSD321-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/dssd321_shapes.py (DSSD321
on a 1/8-width ResNet-50, BatchNorm, from scratch) with the scale-balanced loss of ssd300_scb_voc0712.py;
compare with the baseline's run and with ssd300_scb_shapes.py."""
from scale_balanced import SSDSCB

from ..Baselines.dssd321_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB  # W = 3(ln M + 1)/M on positives' classification loss, as ssd300_scb_voc0712.py
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/dssd321_scb_shapes"
