"""Table 2 ablation: confidence loss GFocal |y-p|^2 * CE, positives only (Eq. 13) (paper: 35.2 AP).
Like the paper, evaluated with the class score only (score_fusion="cls"); add
`model.score_fusion=product` to evaluate with Eq. 11 (Table 3).
"""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.conf_loss_type = "gfocal"
model.conf_gfocal_gamma = 2.0  # Eq. 13
model.score_fusion = "cls"
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_loss_gfocal"
