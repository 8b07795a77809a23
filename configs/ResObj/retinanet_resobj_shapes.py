"""RetinaNet-ResObj (T=2) on the synthetic shapes dataset, small enough for 2 CPU cores.

The CPU demo: configs/Baselines/retinanet_shapes.py (ResNet-18 from scratch, 64-channel FPN and head,
4 images per batch) with the same changes as retinanet_resobj_R_50_FPN_1x.py.
"""
from resobj import ResObjHead, RetinaNetResObj

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetResObj
del model.focal_loss_alpha  # no focal loss (§3.1)
del model.focal_loss_gamma
model.cascade_mode = "paper"
model.gate = "image"
model.test_score_thresh = 0.001  # RetinaNet-Obj's best in Table 1b (with NMS 0.45)
model.test_nms_thresh = 0.45

model.head._target_ = ResObjHead
del model.head.prior_prob
model.head.num_steps = 2  # Table 2c
model.head.residual_input = "objectness"  # Table 2b
model.head.isolate_residual_grad = True  # Table 2a
model.head.objectness_conv_dim = 32  # half the tower width, as in the R50 config
model.head.objectness_prior = 0.01
model.head.class_prior = None  # 1/K

train.output_dir = "./output/retinanet_resobj_shapes"
