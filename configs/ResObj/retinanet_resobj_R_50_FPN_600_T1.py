"""Table 2c ablation, 600px: RetinaNet-ResObj with T=1 residual steps (paper: 35.2 AP)."""
from .retinanet_resobj_R_50_FPN_600_T2 import dataloader, lr_multiplier, model, optimizer, train

model.head.num_steps = 1
train.output_dir = "./output/retinanet_resobj_R_50_FPN_600_T1"
