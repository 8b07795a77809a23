"""Weighting-form ablation (paper Table 1): RetinaNet-SCB with W = 1/sqrt(M) (Table 1 row 3)."""
from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.weighting_form = "inv_sqrt"
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_w_inv_sqrt"
