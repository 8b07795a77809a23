"""Faster R-CNN, ResNet-50-FPN, 1x schedule on COCO.

detectron2's model-zoo Mask R-CNN FPN model with the mask branch removed (RPN with 256 sampled
anchors per image, 512 ROIs per image), 16 images per batch at lr 0.02, 90k iterations, 800px.
"""
from d2imbalance.model_zoo import detectron2_common_config

from ..common.coco import dataloader
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model = detectron2_common_config("common/models/mask_rcnn_fpn.py").model
# Faster R-CNN = the Mask R-CNN model without its mask branch.
model.roi_heads.pop("mask_in_features")
model.roi_heads.pop("mask_pooler")
model.roi_heads.pop("mask_head")
model.backbone.bottom_up.freeze_at = 2
optimizer.lr = 0.02
train.lr_reference = dict(lr=0.02, total_batch_size=16)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.trained_checkpoint = "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_1x/137257794/model_final_b275ba.pkl"
