"""RetinaNet-Obj, ResNet-50-FPN, 1x, 800px: RetinaNet-ResObj with T=0 (paper §3.1, Fig. 1; Table 2c
"T = 0"). The objectness subnet alone replaces the focal loss."""
from .retinanet_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.head.num_steps = 0
train.output_dir = "./output/retinanet_obj_R_50_FPN_1x"
