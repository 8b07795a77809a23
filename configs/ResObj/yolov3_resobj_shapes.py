"""YOLOv3-ResObj (T=2) on the synthetic shapes dataset, small enough for 2 CPU cores.

configs/Baselines/yolov3_shapes.py with the changes of yolov3_resobj_darknet53_608.py; the residual
subnets' hidden convolution shrinks with the width (1/8: 16 channels).
"""
from resobj import YOLOv3ResObj, YOLOv3ResObjHead

from ..Baselines.yolov3_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = YOLOv3ResObj
model.cascade_mode = "paper"
model.gate = "image"
model.test_objectness_step = None
model.head._target_ = YOLOv3ResObjHead
model.head.num_steps = 2
model.head.residual_conv_dim = 16
model.head.residual_input = "objectness"
model.head.isolate_residual_grad = True
train.output_dir = "./output/yolov3_resobj_shapes"
