"""Table 2 ablation: confidence loss L1 on sigmoid outputs, positives only (paper: 35.1 AP). Like the
paper, evaluated with the class score only (score_fusion="cls"); add `model.score_fusion=product` to
evaluate with Eq. 11 (Table 3).
"""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.conf_loss_type = "l1"
model.score_fusion = "cls"
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_loss_l1"
