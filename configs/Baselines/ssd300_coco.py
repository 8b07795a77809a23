"""SSD300 on COCO 2017 (train2017 ~ the paper's trainval35k): the Caffe recipe (examples/ssd/ssd_coco.py).

As SSD300 on VOC but with 80 classes and smaller default boxes (s_k from 15% to 90% of 300, conv4_3 at
7%: min 21, 45, 99, 153, 207, 261 px), 400k iterations at 32 images, lr 1e-3 with x0.1 at 280k and 360k.
Images without objects are dropped: SSD mines no negatives in them, so they would train nothing.
"""
from d2imbalance.modeling import ssd_prior_sizes

from ..common.coco import dataloader
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_ssd_coco as lr_multiplier
from ..common.ssd_mappers import test_mapper, train_mapper
from .ssd300_voc0712 import model, optimizer, train

model.num_classes = 80
model.anchor_generator.min_sizes, model.anchor_generator.max_sizes = ssd_prior_sizes(
    300, num_maps=6, min_ratio=15, max_ratio=90, first_ratios=(7, 15)
)
dataloader.train.mapper = train_mapper
dataloader.train.dataset.filter_empty = True
dataloader.train.total_batch_size = 32
dataloader.test.mapper = test_mapper
train.max_iter = 400000
train.eval_period = 40000
train.checkpointer.period = 40000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="original")  # COCO areas
train.output_dir = "./output/ssd300_coco"
