"""Faster R-CNN small enough to train on 2 CPU cores in minutes, on the shapes dataset.

Derived from the R50 COCO baseline like retinanet_shapes.py: ResNet-18 from scratch with GroupNorm,
64-channel FPN, anchors 16-256 px, a 256-d two-fc box head.
"""
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_demo as lr_multiplier
from ..common.shapes import dataloader
from ..common.train import train
from .faster_rcnn_R_50_FPN_1x import model

model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages.depth = 18
model.backbone.bottom_up.stages.norm = "GN"
model.backbone.bottom_up.stages.pop("stride_in_1x1")  # BasicBlock (ResNet-18) takes no such argument
model.backbone.bottom_up.freeze_at = 0  # nothing pretrained to keep frozen
model.backbone.out_channels = 64
model.backbone.norm = "GN"
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (500, 300)
model.roi_heads.num_classes = 4  # d2imbalance.data.shapes.CATEGORIES
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape.channels = 64
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape.channels = 256

dataloader.train.total_batch_size = 4
optimizer.lr = 0.02
train.lr_reference = dict(lr=0.02, total_batch_size=4)
train.init_checkpoint = ""
train.trained_checkpoint = ""
train.max_iter = 1000
train.eval_period = 500
train.checkpointer.period = 500
train.log_period = 20
train.output_dir = "./output/faster_rcnn_shapes"
