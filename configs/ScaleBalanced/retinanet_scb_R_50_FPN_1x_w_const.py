"""Weighting-form ablation (paper Table 1): RetinaNet-SCB with W = 1 (Table 1 row 1; = vanilla RetinaNet)."""
from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.weighting_form = "const"
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_w_const"
