"""RetinaNet with GHM-C and RetinaNet's own box loss, ResNet-50-FPN, 1x on COCO: the paper's GHM-C row
(35.8 AP on minival vs 35.6 for the focal loss), the row the review's Table 1 compares.

retinanet_ghm_R_50_FPN_1x.py with ``box_loss="smooth_l1"``: detectron2's L1 box loss (smooth_l1_beta 0)
divided by the positive-anchor EMA, exactly as in the baseline.
"""
from .retinanet_ghm_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.box_loss = "smooth_l1"
train.output_dir = "./output/retinanet_ghm_c_R_50_FPN_1x"
