"""Table 4 ablation, inference only: fused score "product(alpha=0.4, obj>0.5)" (paper: 36.0 AP).

Evaluate a checkpoint of retinanet_conf_R_50_FPN_1x.py with --eval-only train.init_checkpoint=...
"""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.score_fusion = "product"
model.conf_filter_thresh = 0.5
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_fusion_product_filter"
