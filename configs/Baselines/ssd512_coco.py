"""SSD512 on COCO 2017: the Caffe recipe's SSD512 COCO boxes (s_k from 10% to 90% of 512, conv4_3 at 4%:
min 20.48, 51.2, 133.12, ... px) with the COCO schedule of ssd300_coco.py.
"""
from d2imbalance.modeling import ssd_prior_sizes

from ..common.coco import dataloader
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_ssd_coco as lr_multiplier
from ..common.ssd_mappers import test_mapper, train_mapper
from .ssd512_voc0712 import model, optimizer, train

model.num_classes = 80
model.anchor_generator.min_sizes, model.anchor_generator.max_sizes = ssd_prior_sizes(
    512, num_maps=7, min_ratio=10, max_ratio=90, first_ratios=(4, 10)
)
dataloader.train.mapper = train_mapper
dataloader.train.mapper.augmentations[3].shape = (512, 512)  # the Resize
dataloader.train.dataset.filter_empty = True
dataloader.train.total_batch_size = 32
dataloader.test.mapper = test_mapper
dataloader.test.mapper.augmentations[0].shape = (512, 512)
train.max_iter = 400000
train.eval_period = 40000
train.checkpointer.period = 40000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="original")  # COCO areas
train.output_dir = "./output/ssd512_coco"
