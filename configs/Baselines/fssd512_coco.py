"""FSSD512 on COCO 2017 (paper: 31.8 AP on test-dev): configs/Baselines/ssd512_coco.py (SSD512's COCO
default boxes, 24564 boxes on 7 maps, and the COCO schedule) with FSSDVGG at 512: conv4_3 + fc7 + conv7_2
fused at 64x64, pyramid 64, 32, 16, 8, 4, 2, 1 (512, 512, then 256 channels; the last a 4x4
convolution), as the authors' PyTorch code."""
from ..common.models.fssd import use_fssd
from .ssd512_coco import dataloader, lr_multiplier, model, optimizer, train

model = use_fssd(model)
train.output_dir = "./output/fssd512_coco"
