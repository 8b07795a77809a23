"""IoU-aware RetinaNet (the paper's ref. [23], Fig. 3b), ResNet-50-FPN, 1x, [1000, 600]: the same
confidence branch and loss as RetinaNet-Conf, but on the box tower (Table 6: 36.1 AP).

Fused as IoU^0.5 * cls^0.5 (Eq. 1; Table 5 gives 0.361 AP at alpha 0.4 and 0.5).
"""

from objconf import IoUAwareRetinaNetHead

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.head._target_ = IoUAwareRetinaNetHead
model.head.conf_tower = "box"
model.fusion_alpha = 0.5
train.output_dir = "./output/retinanet_iou_aware_R_50_FPN_1x"
