"""RetinaNet-Conf on the embedded shapes dataset: the CPU demo (2 cores, minutes).

configs/Baselines/retinanet_shapes.py (ResNet-18-GN from scratch, 64-channel FPN, 2-conv head) with
the confidence branch on the class tower and the paper's loss and fusion settings.
"""

from objconf import RetinaNetConf, RetinaNetConfHead

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetConf
model.head._target_ = RetinaNetConfHead
model.head.conf_tower = "cls"
model.conf_loss_type = "ce"  # Eq. 9
model.conf_loss_normalizer = "num_pos"
model.cls_loss_weight = 1.0  # Eq. 10
model.box_loss_weight = 1.0
model.conf_loss_weight = 1.0
model.detach_iou_target = False
model.score_fusion = "product"  # Eq. 11, alpha from Table 5
model.fusion_alpha = 0.4
model.conf_filter_thresh = None

train.output_dir = "./output/retinanet_conf_shapes"
