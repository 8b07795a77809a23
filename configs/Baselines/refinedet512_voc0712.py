"""RefineDet512 on Pascal VOC 07+12, tested on VOC07 (paper Table 1: 81.8 mAP): the Caffe recipe
(examples/refinedet/VGG16_VOC2007_512.py): RefineDet320's network, anchors (32 ... 256 px, strides 8 ...
64) and schedule at 512x512, so the ARM maps are 64, 32, 16, 8 and there are 16320 anchors.
"""
from .refinedet320_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.input_size = 512
dataloader.train.mapper.augmentations[3].shape = (512, 512)
dataloader.test.mapper.augmentations[0].shape = (512, 512)
train.output_dir = "./output/refinedet512_voc0712"
