"""FSSD300 on COCO 2017 (paper: 27.1 AP on test-dev): configs/Baselines/ssd300_coco.py (SSD's COCO default
boxes and 400k-iteration schedule) with the FSSD network of configs/common/models/fssd.py."""
from ..common.models.fssd import use_fssd
from .ssd300_coco import dataloader, lr_multiplier, model, optimizer, train

model = use_fssd(model)
train.output_dir = "./output/fssd300_coco"
