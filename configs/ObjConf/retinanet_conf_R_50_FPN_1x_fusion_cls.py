"""Table 4 ablation, inference only: fused score "cls" (paper: 35.7 AP).

Evaluate a checkpoint of retinanet_conf_R_50_FPN_1x.py with --eval-only train.init_checkpoint=...
"""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.score_fusion = "cls"
model.conf_filter_thresh = None
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_fusion_cls"
