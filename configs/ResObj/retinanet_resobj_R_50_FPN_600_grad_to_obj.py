"""Table 2a ablation, 600px: let the residual losses reach the objectness subnet ("To Objectness",
34.5 AP vs 35.2 isolated). The paper's 35.2 equals its T=1 row, so the ablation is at T=1."""
from .retinanet_resobj_R_50_FPN_600_T1 import dataloader, lr_multiplier, model, optimizer, train

model.head.isolate_residual_grad = False
train.output_dir = "./output/retinanet_resobj_R_50_FPN_600_grad_to_obj"
