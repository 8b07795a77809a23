"""Weighting-form ablation (paper Table 1, SSD300 on VOC07 test): SSD300-SCB with W = β/M (Table 1 row 4: 76.8).
Table 1's forms carry β = 3 (see projects/ScaleBalanced/README.md)."""
from .ssd300_scb_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model.weighting_form = "inv"
train.output_dir = "./output/ssd300_scb_voc0712_w_inv"
