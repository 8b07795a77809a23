"""SSD300 small enough to train on 2 CPU cores, on the shapes dataset, from scratch.

The SSD300 geometry is kept whole (300x300 input, the 6 maps 38 ... 1, the 8732 default boxes of the
VOC recipe, matching, mining and inference), so match counts and object sizes are measured as in the
scale-balanced paper (sizes after resizing to 300, its §3.1). What shrinks is the width: every VGG16
and extra layer has 1/8 of its channels (conv4_3 64, fc7 128), which divides the ~31 GMAC of SSD300's
forward pass by ~64. With no ImageNet weights to start from, BatchNorm follows every VGG16 convolution
(the extra layers stay as in the paper). norm="GN" (4 groups at this width) also works; it was 1.75x
slower per step than BatchNorm on the 2-core CPU.
"""
from detectron2.layers import ShapeSpec

from ..common.optim import SGD as optimizer
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_demo as lr_multiplier
from ..common.shapes import dataloader
from ..common.ssd_mappers import test_mapper, train_mapper
from ..common.train import train
from .ssd300_voc0712 import model

model.num_classes = 4  # d2imbalance.data.shapes.CATEGORIES
model.backbone.width_ratio = 0.125
model.backbone.norm = "BN"
model.head.input_shape = [  # SSDVGG's channels x 1/8
    ShapeSpec(channels=64),
    ShapeSpec(channels=128),
    ShapeSpec(channels=64),
    ShapeSpec(channels=32),
    ShapeSpec(channels=32),
    ShapeSpec(channels=32),
]

dataloader.train.mapper = train_mapper
dataloader.train.dataset.filter_empty = True  # images without objects mine no negatives: no loss
dataloader.train.total_batch_size = 8
dataloader.test.mapper = test_mapper
optimizer.lr = 1e-3  # the recipe's lr at 1/4 of its batch; in 60-iteration trials (BN variant) 1e-2 diverged, 1e-3 did not
optimizer.weight_decay = 5e-4
train.lr_reference = dict(lr=1e-3, total_batch_size=8)
train.init_checkpoint = ""
train.trained_checkpoint = ""
train.max_iter = 1000
train.eval_period = 500
train.checkpointer.period = 500
train.log_period = 20
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="input")  # COCO AP + the paper's recall
train.output_dir = "./output/ssd300_shapes"
