"""IoU-aware RetinaNet (confidence branch on the box tower) on the shapes dataset, for the demo
comparison with retinanet_conf_shapes.py and configs/Baselines/retinanet_shapes.py."""

from objconf import IoUAwareRetinaNetHead

from .retinanet_conf_shapes import dataloader, lr_multiplier, model, optimizer, train

model.head._target_ = IoUAwareRetinaNetHead
model.head.conf_tower = "box"
model.fusion_alpha = 0.5  # Eq. 1
train.output_dir = "./output/retinanet_iou_aware_shapes"
