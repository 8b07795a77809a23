"""RefineDet320 on Pascal VOC 07+12, tested on VOC07 (paper Table 1: 80.0 mAP; the scale-balanced paper's
baseline in §4.1.1 and Table 2): the authors' Caffe recipe (sfzhang15/RefineDet,
examples/refinedet/VGG16_VOC2007_320.py) with the network of configs/common/models/refinedet.py.

ImageNet VGG16 from torchvision, converted on first use (the same reduced fc6/fc7 as SSD); SSD's data
augmentation at 320x320; 32 images per batch, SGD lr 1e-3, momentum 0.9, weight decay 5e-4 (none on
biases, whose lr is doubled, as Caffe's layers), 120k iterations with x0.1 at 80k and 100k.
"""
from ..common.models.refinedet import model
from .ssd300_voc0712 import dataloader, lr_multiplier, optimizer, train  # SSD's recipe, data and evaluators

dataloader.train.mapper.augmentations[3].shape = (320, 320)  # the Resize
dataloader.test.mapper.augmentations[0].shape = (320, 320)
train.output_dir = "./output/refinedet320_voc0712"
