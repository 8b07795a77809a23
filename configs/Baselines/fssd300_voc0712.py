"""FSSD300 on Pascal VOC 07+12, tested on VOC07 (Li & Zhou 2017, arXiv 1712.00960; paper: 78.8 mAP).

configs/Baselines/ssd300_voc0712.py with the FSSD network (configs/common/models/fssd.py); the training
recipe is SSD's Caffe recipe unchanged (ImageNet VGG16 from torchvision, 32 images, SGD lr 1e-3,
120k iterations with x0.1 at 80k and 100k, no warm-up), which the paper builds on. The paper's own
schedule details (its learning rate, warm-up, iterations) were not verified against its text here; set
them on top of this file to reproduce it exactly. The fusion BatchNorm is per-GPU ("BN"); use
``model.backbone.fusion_norm = "SyncBN"`` for batch statistics over all GPUs.
"""
from ..common.models.fssd import use_fssd
from .ssd300_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model = use_fssd(model)
train.output_dir = "./output/fssd300_voc0712"
