"""DSSD321 on COCO 2017 (Fu et al. 2017, arXiv 1701.06659, Table 4: 28.0 AP on COCO test-dev):
configs/common/models/dssd.py at 321 for 80 classes, with the data, SSD augmentation (warped to 321x321)
and 400k-iteration schedule of configs/Baselines/ssd300_coco.py, from detectron2's ImageNet R-101.pkl.

Departures from the paper: one end-to-end stage (the paper trains SSD321 first, then the deconvolution
module with the SSD part frozen); SSD's COCO schedule and lr (the authors' scripts accumulate 32 images
per step too). The authors released no COCO script for 321: the default boxes take SSD300 COCO's sizes
(s_k from 15% to 90% of 321, the first map 7%) with DSSD's aspect ratios 1.6, 2, 3 (17080 boxes).
"""
from ..common.coco import dataloader
from ..common.models.dssd import dssd_model, use_input_size
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_ssd_coco as lr_multiplier
from ..common.ssd_mappers import test_mapper, train_mapper
from .ssd300_voc0712 import optimizer, train

model = dssd_model(321, prior_ratios=(15, 90, (7, 15)), num_classes=80)
dataloader.train.mapper = train_mapper
dataloader.train.dataset.filter_empty = True  # SSD mines no negatives in images without objects
dataloader.train.total_batch_size = 32
dataloader.test.mapper = test_mapper
dataloader = use_input_size(dataloader, 321)
train.lr_reference = dict(lr=1e-3, total_batch_size=32)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.max_iter = 400000
train.eval_period = 40000
train.checkpointer.period = 40000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="original")  # COCO areas
train.output_dir = "./output/dssd321_coco"
