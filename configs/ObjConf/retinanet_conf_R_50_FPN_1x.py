"""RetinaNet-Conf, ResNet-50-FPN, 1x, at the paper's scale [1000, 600] (Table 6: 36.0 AP on COCO val).

The focal-loss baseline with one more head output: a confidence conv on the class tower (Fig. 3d),
trained with BCE on the IoU of the decoded box (Eq. 9), fused as conf^0.4 * cls^0.6 before the score
threshold and NMS (Eq. 11). 1x = 90k iterations at 16 images, lr ÷10 at 60k and 80k (≈ epochs 8 and
11 of the paper's 12-epoch MMDetection schedule). Trains at short side 600, long side ≤ 1000, as the
paper; detectron2's RetinaNet baseline (configs/Baselines) trains at 800.
"""

from objconf import RetinaNetConf, RetinaNetConfHead

from ..Baselines.retinanet_R_50_FPN_1x import lr_multiplier, model, optimizer, train
from ..common.coco_600 import dataloader

model._target_ = RetinaNetConf
model.head._target_ = RetinaNetConfHead
model.head.conf_tower = "cls"  # Fig. 3d; "box" is IoU-aware RetinaNet
# Training (§3.2): Eq. 9 BCE on positives, normalised by their number; Eq. 10 weights 1.0.
model.conf_loss_type = "ce"
model.conf_loss_normalizer = "num_pos"
model.cls_loss_weight = 1.0
model.box_loss_weight = 1.0
model.conf_loss_weight = 1.0
model.detach_iou_target = False  # the authors' code lets the conf loss reach the box branch
# Inference (§3.3): Eq. 11 product with alpha = 0.4 (Table 5), no conf filter (Table 4);
# test_score_thresh (0.05) then applies to the fused score.
model.score_fusion = "product"
model.fusion_alpha = 0.4
model.conf_filter_thresh = None

train.trained_checkpoint = ""  # the baseline's published RetinaNet weights do not fit this head
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x"
