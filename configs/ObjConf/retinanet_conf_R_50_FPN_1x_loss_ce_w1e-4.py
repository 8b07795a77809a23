"""Table 2 ablation: confidence loss CE^w with negatives at weight w=1e-4 (paper: 35.5 AP). Like the
paper, evaluated with the class score only (score_fusion="cls"); add `model.score_fusion=product` to
evaluate with Eq. 11 (Table 3).
"""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.conf_loss_type = "ce_w"
model.conf_neg_weight = 1e-4  # negatives, target 0
model.score_fusion = "cls"
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_loss_ce_w1e-4"
