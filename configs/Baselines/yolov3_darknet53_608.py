"""YOLOv3 (Darknet-53) on COCO 2017 at 608x608: yolov3.cfg's recipe (pjreddie/darknet), the ResObj
paper's YOLOv3 baseline (Table 3: 33.0 AP on test-dev at 608).

Darknet-53 from Darknet's ImageNet weights (darknet53.conv.74); 64 images per batch, SGD lr 1e-3,
momentum 0.9, weight decay 5e-4 on convolution weights only, burn-in (iter / 1000)^4 over the first
1000 iterations, x0.1 at 400k and 450k, 500200 iterations; multi-scale 320-608. Departures: COCO
train2017 / val2017 instead of Darknet's trainvalno5k / 5k lists (the same split up to a few images),
and each batch is drawn at 608 and resized to its size instead of drawn at that size.
"""
from ..common.coco import dataloader
from ..common.models.yolov3 import model
from ..common.optim import SGD as optimizer
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_yolov3 as lr_multiplier
from ..common.train import train
from ..common.yolov3_mappers import test_mapper, train_mapper

dataloader.train.mapper = train_mapper
dataloader.train.total_batch_size = 64
dataloader.test.mapper = test_mapper
optimizer.lr = 1e-3
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_bias = 0.0  # Darknet decays convolution weights only
train.lr_reference = dict(lr=1e-3, total_batch_size=64)
# Darknet's ImageNet Darknet-53, converted on first use (d2imbalance/modeling/darknet_weights.py).
train.init_checkpoint = "darknet53://https://pjreddie.com/media/files/darknet53.conv.74"
train.trained_checkpoint = ""
train.max_iter = 500200
train.eval_period = 50000
train.checkpointer.period = 10000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="original")  # COCO areas
train.output_dir = "./output/yolov3_darknet53_608"
