"""YOLOv3-ResObj (Darknet-53) on COCO at 608x608 (ResObj paper Table 3: 33.0 -> 34.1 AP on test-dev).

configs/Baselines/yolov3_darknet53_608.py with YOLOv3's objectness replaced by residual objectness
(paper §4.1): every hyper-parameter of yolov3.cfg unchanged, T = 2 residual steps (Table 2c's best; the
paper gives no T for YOLOv3), each residual subnet a 1x1 convolution of 128 channels and a 1x1 output
per anchor on the feature YOLOv3's prediction reads, its input and o_{t-1} detached (Table 2a).
"""
from resobj import YOLOv3ResObj, YOLOv3ResObjHead

from ..Baselines.yolov3_darknet53_608 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = YOLOv3ResObj
model.cascade_mode = "paper"
model.gate = "image"
model.test_objectness_step = None  # o_T
model.head._target_ = YOLOv3ResObjHead
model.head.num_steps = 2
model.head.residual_conv_dim = 128
model.head.residual_input = "objectness"  # Table 2b
model.head.isolate_residual_grad = True  # Table 2a
train.output_dir = "./output/yolov3_resobj_darknet53_608"
