"""DSSD321 small enough to train on 2 CPU cores, on the shapes dataset, from scratch: the data, SSD
augmentation (warped to 321x321), optimizer and schedule of configs/Baselines/ssd300_shapes.py.

The DSSD321 geometry is kept whole (321x321 input, the maps 40, 20, 10, 5, 3, 1, 8 boxes per location:
17080 default boxes with the sizes of the authors' VOC script, s_k from 20% to 95%, the first map 10%),
so match counts and object sizes are measured as in the full model. What shrinks is the network: a
ResNet-50 (the paper's ResNet-101 has 17 more conv4_x blocks) with 1/8 of every channel count (conv3_x
64, conv5_x 256, extra layers 128, decoder 64, prediction modules 32 / 128) and BatchNorm trained from
scratch in the ResNet and the deconvolution modules (no ImageNet weights fit this width; nothing
frozen); the extra layers and prediction modules have no norm, as in the full model. Trained end-to-end in one
stage (the paper trains SSD first, then the deconvolution module).
"""
from ..common.models.dssd import dssd_model, use_input_size
from .ssd300_shapes import dataloader, lr_multiplier, optimizer, train

model = dssd_model(
    321, prior_ratios=(20, 95, (10, 20)), num_classes=4, depth=50, width_ratio=0.125, norm="BN", freeze_at=0
)
dataloader = use_input_size(dataloader, 321)
train.output_dir = "./output/dssd321_shapes"
