"""RefineDet320 on Pascal VOC 07+12, tested on VOC07 (paper Table 1: 80.0 mAP; the scale-balanced paper's
baseline in §4.1.1 and Table 2): the authors' Caffe recipe (sfzhang15/RefineDet,
examples/refinedet/VGG16_VOC2007_320.py) with the network of configs/common/models/refinedet.py.

ImageNet VGG16 from torchvision, converted on first use (the same reduced fc6/fc7 as SSD); SSD's data
augmentation at 320x320; 32 images per batch, SGD lr 1e-3, momentum 0.9, weight decay 5e-4 (none on
biases, whose lr is doubled, as Caffe's layers), 120k iterations with x0.1 at 80k and 100k.
"""
from ..common.models.refinedet import model
from ..common.optim import SGD as optimizer
from ..common.recall_by_size import with_recall_by_size
from ..common.schedules import lr_multiplier_ssd_voc as lr_multiplier
from ..common.train import train
from ..common.voc0712 import dataloader

dataloader.train.mapper.augmentations[3].shape = (320, 320)  # the Resize
dataloader.test.mapper.augmentations[0].shape = (320, 320)
optimizer.lr = 1e-3
optimizer.weight_decay = 5e-4
optimizer.params.base_lr = "${..lr}"  # needed by bias_lr_factor
optimizer.params.bias_lr_factor = 2.0
optimizer.params.weight_decay_bias = 0.0
train.lr_reference = dict(lr=1e-3, total_batch_size=32)
train.init_checkpoint = "torchvision-vgg16://IMAGENET1K_V1"  # see d2imbalance/modeling/vgg.py
train.trained_checkpoint = ""
train.max_iter = 120000
train.eval_period = 10000
train.checkpointer.period = 10000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="input")  # sizes in the 320x320 input
train.output_dir = "./output/refinedet320_voc0712"
