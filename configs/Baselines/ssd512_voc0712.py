"""SSD512 on Pascal VOC 07+12, tested on VOC07: the Caffe recipe (examples/ssd/ssd_pascal_512.py). Same
schedule and batch as SSD300.

Default boxes on 7 maps (64, 32, 16, 8, 4, 2, 1): s_k from 15% to 90% of 512 with conv4_3 at 7%
(min 35.84, 76.8, 153.6, 230.4, 307.2, 384, 460.8 px; max up to 537.6), aspect ratios {2} on the first
and last two maps, {2, 3} on the others: 24564 boxes.
"""
from detectron2.layers import ShapeSpec

from d2imbalance.modeling import ssd_prior_sizes

from .ssd300_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.input_size = 512
model.head.input_shape = model.head.input_shape + [ShapeSpec(channels=256)]  # conv10_2
model.head.num_anchors = [4, 6, 6, 6, 6, 4, 4]
model.anchor_generator.min_sizes, model.anchor_generator.max_sizes = ssd_prior_sizes(
    512, num_maps=7, min_ratio=15, max_ratio=90, first_ratios=(7, 15)
)
model.anchor_generator.aspect_ratios = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
model.anchor_generator.strides = [8, 16, 32, 64, 128, 256, 512]
dataloader.train.mapper.augmentations[3].shape = (512, 512)  # the Resize
dataloader.test.mapper.augmentations[0].shape = (512, 512)
train.output_dir = "./output/ssd512_voc0712"
