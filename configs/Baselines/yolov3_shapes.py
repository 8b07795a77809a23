"""YOLOv3 small enough to train on 2 CPU cores, on the shapes dataset, from scratch.

yolov3.cfg's network, targets, loss, augmentation, learning rate and inference are kept; what shrinks
is the width (every Darknet-53 and head layer at 1/8 of its channels, ~1/64 of the compute), the input
(shapes images are 224-288 px: multi-scale 192-320 every 10 iterations, tested at 256) and the schedule
(2000 iterations at 8 images, burn-in over the first 100 iterations instead of 1000, x0.1 at 80 %). The
COCO anchors are kept: shapes objects span about the same pixel sizes.

From scratch at Darknet's lr 1e-3, YOLOv3 learns slowly: after 500 iterations (1/4 width) it scored
0.04 AP, every objectness still near the negatives' level; at 3e-3 and 1e-2 the w, h loss diverged
within 50 iterations. Hence the longer schedule rather than a larger rate.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from fvcore.common.param_scheduler import MultiStepParamScheduler

from d2imbalance.schedules import PolynomialBurnIn

from ..common.optim import SGD as optimizer
from ..common.recall_by_size import with_recall_by_size
from ..common.shapes import dataloader
from ..common.train import train
from ..common.yolov3_mappers import test_mapper, train_mapper
from .yolov3_darknet53_608 import model

model.num_classes = 4  # d2imbalance.data.shapes.CATEGORIES
model.backbone.width_ratio = 0.125
model.head.input_shape = [ShapeSpec(channels=32), ShapeSpec(channels=64), ShapeSpec(channels=128)]
model.input_size = 256
model.multiscale.sizes = (192, 224, 256, 288, 320)
model.multiscale.final_size = None
model.multiscale.final_iters = 0

train_mapper.augmentations[0].size = 320  # the largest multi-scale size
test_mapper.augmentations[0].short_edge_length = 256
test_mapper.augmentations[0].max_size = 256
dataloader.train.mapper = train_mapper
dataloader.train.total_batch_size = 8
dataloader.test.mapper = test_mapper

optimizer.lr = 1e-3
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_bias = 0.0
# Burn-in over the first 100 iterations (5 % of 2000), counted in iterations as Darknet counts it: a run
# shortened with train.max_iter keeps it (with a 5 % burn-in, seed 0 of a 300-iteration run saw its w, h
# loss diverge at iteration 172). The x0.1 step stays at 80 % of the run.
lr_multiplier = L(PolynomialBurnIn)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[8, 10]),
    burn_in=100,
    power=4.0,
    max_iter="${train.max_iter}",
)
train.lr_reference = dict(lr=1e-3, total_batch_size=8)
train.init_checkpoint = ""
train.trained_checkpoint = ""
train.max_iter = 2000
train.eval_period = 1000
train.checkpointer.period = 1000
train.log_period = 20
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="input")
train.output_dir = "./output/yolov3_shapes"
