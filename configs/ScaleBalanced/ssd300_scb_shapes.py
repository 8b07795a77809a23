"""SSD300-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/ssd300_shapes.py (SSD300's
geometry, 1/8 of its width, BatchNorm, from scratch) with the scale-balanced loss of
ssd300_scb_voc0712.py. Evaluated with COCO AP and the paper's recall by size (sizes in the 300x300
input); compare with the baseline's run (projects/ScaleBalanced/README.md).
"""
from scale_balanced import SSDSCB

from ..Baselines.ssd300_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SSDSCB
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/ssd300_scb_shapes"
