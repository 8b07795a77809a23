"""Weighting-form ablation (paper Table 1): RetinaNet-SCB with W = (log M + 1)/M (Table 1 row 5, the basic form of Eq. 3 without β)."""
from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.weighting_form = "log_over_m"
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_w_log_over_m"
