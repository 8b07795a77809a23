"""Table 2c ablation, 600px: RetinaNet-ResObj with T=0 residual steps (paper: 34.1, i.e. RetinaNet-Obj AP)."""
from .retinanet_resobj_R_50_FPN_600_T2 import dataloader, lr_multiplier, model, optimizer, train

model.head.num_steps = 0
train.output_dir = "./output/retinanet_resobj_R_50_FPN_600_T0"
