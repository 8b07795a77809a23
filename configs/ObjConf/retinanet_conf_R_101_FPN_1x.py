"""RetinaNet-Conf, ResNet-101-FPN, 1x, [1000, 600] (Table 6: 38.0 AP; RetinaNet 37.0)."""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/retinanet_conf_R_101_FPN_1x"
