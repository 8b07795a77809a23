"""FSSD300 (Li & Zhou 2017, arXiv 1712.00960) for the 20 VOC classes: configs/common/models/ssd.py with the
backbone swapped for d2imbalance.modeling.FSSDVGG (reduced VGG16, conv4_3 + fc7 + conv7_2 fused at 38x38
with BatchNorm, then a new pyramid 38, 19, 10, 5, 3, 1 of 512, 512, 256, 256, 256, 256 channels; the
network of the authors' PyTorch code, lzx1413/PytorchSSD models/FSSD_vgg.py). Everything else is SSD's:
the 8732 default boxes, matching, 3:1 mining, loss and inference.

``use_fssd(model)`` makes any SSD config's model an FSSD one (same input size, width and VGG16 norm); the
FSSD baselines apply it to the matching SSD baseline so that only the network differs.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from d2imbalance.modeling import FSSDVGG

from .ssd import model

# FSSDVGG's output channels at width 1 (the pyramid of the authors' code).
_FSSD_CHANNELS = {300: (512, 512, 256, 256, 256, 256), 512: (512, 512, 256, 256, 256, 256, 256)}


def use_fssd(model):
    """Replace an SSD config's SSDVGG by FSSDVGG of the same input size, width_ratio and norm, and set the
    head's input channels to FSSDVGG's."""
    ssd = model.backbone
    size, ratio, norm = ssd.input_size, ssd.get("width_ratio", 1.0), ssd.get("norm", "")
    model.backbone = L(FSSDVGG)(input_size=size, width_ratio=ratio, norm=norm)
    model.head.input_shape = [ShapeSpec(channels=max(1, int(round(c * ratio)))) for c in _FSSD_CHANNELS[size]]
    return model


model = use_fssd(model)
