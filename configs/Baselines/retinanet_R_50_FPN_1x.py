"""Focal-loss RetinaNet, ResNet-50-FPN, 1x schedule on COCO (Lin's thesis ch. 5).

detectron2's model-zoo RetinaNet (α=0.25, γ=2, prior 0.01, anchors 32-512 on P3-P7, IoU 0.4/0.5),
16 images per batch at lr 0.01, 90k iterations, 800px.
"""
from d2imbalance.model_zoo import detectron2_common_config

from ..common.coco import dataloader
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model = detectron2_common_config("common/models/retinanet.py").model
model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.01
train.lr_reference = dict(lr=0.01, total_batch_size=16)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.trained_checkpoint = "detectron2://COCO-Detection/retinanet_R_50_FPN_1x/190397773/model_final_bfca0b.pkl"
