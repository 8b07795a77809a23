"""Weighting-form ablation (paper Table 1, SSD300 on VOC07 test): SSD300-SCB with W = β(log M + 1)/M (Table 1 row 5: 78.2; Eq. 3 at α = 1, so the same loss as ssd300_scb_voc0712.py).
Table 1's forms carry β = 3 (see projects/ScaleBalanced/README.md)."""
from .ssd300_scb_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model.weighting_form = "log_over_m"
train.output_dir = "./output/ssd300_scb_voc0712_w_log_over_m"
