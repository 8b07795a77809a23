"""DSSD513 on COCO 2017 (Fu et al. 2017, arXiv 1701.06659, Table 4 and abstract: 33.2 AP on COCO test-dev):
configs/common/models/dssd.py at 513 for 80 classes with the default boxes of the authors' COCO script
(ssd_coco_resnet_deconv_513.py: s_k from 10% to 95% of 513, the first map 4%; aspect ratios 1.6, 2, 3 on
the 7 maps 64 ... 1: 43688 boxes), and the data, SSD augmentation (warped to 513x513) and 400k-iteration
schedule of configs/Baselines/ssd512_coco.py, from detectron2's ImageNet R-101.pkl.

Departures from the paper: one end-to-end stage (the paper trains SSD513 first, then the deconvolution
module with the SSD part frozen; the authors' script for that stage runs 150k iterations of 32 images,
x0.1 at 80k and 130k); SSD's COCO schedule and lr here.
"""
from ..common.coco import dataloader
from ..common.models.dssd import dssd_model, use_input_size
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_ssd_coco as lr_multiplier
from ..common.ssd_mappers import test_mapper, train_mapper
from .ssd300_voc0712 import optimizer, train

model = dssd_model(513, prior_ratios=(10, 95, (4, 10)), num_classes=80)
dataloader.train.mapper = train_mapper
dataloader.train.dataset.filter_empty = True  # SSD mines no negatives in images without objects
dataloader.train.total_batch_size = 32
dataloader.test.mapper = test_mapper
dataloader = use_input_size(dataloader, 513)
train.lr_reference = dict(lr=1e-3, total_batch_size=32)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.max_iter = 400000
train.eval_period = 40000
train.checkpointer.period = 40000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="original")  # COCO areas
train.output_dir = "./output/dssd513_coco"
