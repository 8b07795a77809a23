"""FSSD (Li & Zhou, "FSSD: Feature Fusion Single Shot Multibox Detector", arXiv 1712.00960) as an SSD
backbone: FSSD is :class:`~.ssd.SSD` (its default boxes, matching, mined loss and inference unchanged)
on :class:`FSSDVGG`, SSD's reduced VGG16 followed by the feature fusion module and a new pyramid.

The network follows the authors' PyTorch code (lzx1413/PytorchSSD, ``models/FSSD_vgg.py``), which the
paper's code link points to:

* sources: conv4_3 (after its ReLU, **no L2 normalisation**: the code drops SSD's L2Norm), fc7, and
  conv7_2 of two new extra blocks on fc7: conv6_1 1x1/256, conv6_2 3x3/512 stride 1 without padding,
  conv7_1 1x1/128, conv7_2 3x3/256 stride 2 padding 1, each with ReLU (FSSD300: fc7 19 -> 17 -> conv7_2
  9x9; FSSD512: 32 -> 30 -> 15x15). SSD's conv8/conv9 are not built.
* fusion (:class:`FeatureFusion`): each source through a 1x1 convolution to 256 channels + ReLU, the
  smaller ones resized bilinearly (corners aligned, as PyTorch 0.3's ``Upsample`` the code ran on and
  Caffe's Interp) to conv4_3's size (38x38 / 64x64), concatenated (768 channels), then BatchNorm
  (the paper's and the code's ``fea_bn``; "BN" here, any detectron2 norm via ``fusion_norm``).
* pyramid: 3x3 convolutions with ReLU, no norm (the code's ``BasicConv(bn=False)``):
  FSSD300: 512 s1 (38), 512 s2 (19), 256 s2 (10), 256 s2 (5), 256 3x3 no padding (3), 256 (1);
  FSSD512: 512 s1 (64), 512 s2 (32), then 256 s2 (16, 8, 4, 2) and a 4x4 padding 1 (1).

Default boxes are SSD's (the configs keep the SSD300/SSD512 recipes': 8732 / 24564 boxes, not clipped).
The authors' PyTorch code takes RFBNet's prior config instead (``data/config.py``: ratios {2, 3}, so 6
boxes per location, on the first map too, and clipped boxes); we keep SSD's so that FSSD differs from SSD
only in its features.

New layers are Xavier-initialised with zero bias, as SSD's extra layers; the VGG16 part has SSDVGG's
parameter names, so the ``torchvision-vgg16://`` checkpoint warm-starts it as it does SSD.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import require_detectron2
from .vgg import SSDVGG

require_detectron2("d2imbalance.modeling.fssd")
from detectron2.layers import Conv2d, get_norm  # noqa: E402

__all__ = ["FeatureFusion", "FSSDVGG"]

# FSSD's extra blocks on fc7 (SSDVGG's format: mid, out, kernel, stride, padding), the same at 300 and 512.
_FSSD_EXTRA_BLOCKS = ((256, 512, 3, 1, 0), (128, 256, 3, 2, 1))
# The pyramid on the fused map: (out channels, kernel, stride, padding) per output map.
_PYRAMID = {
    300: ((512, 3, 1, 1), (512, 3, 2, 1), (256, 3, 2, 1), (256, 3, 2, 1), (256, 3, 1, 0), (256, 3, 1, 0)),
    512: (
        (512, 3, 1, 1), (512, 3, 2, 1), (256, 3, 2, 1), (256, 3, 2, 1), (256, 3, 2, 1), (256, 3, 2, 1),
        (256, 4, 1, 1),
    ),
}  # fmt: skip
_FUSION_SOURCES = ("conv4_3", "fc7", "conv7_2")


def _xavier(layer: nn.Module) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class FeatureFusion(nn.Module):
    """FSSD's feature fusion module: per source a 1x1 convolution to ``channels`` + ReLU, bilinear resize
    to the first source's size, concatenation, then a norm (BatchNorm in the paper)."""

    def __init__(
        self, in_channels: Sequence[int], *, channels: int = 256, norm: str = "BN", align_corners: bool = True
    ):
        """
        Args:
            in_channels: channels of each source, the largest map first (it sets the output size).
            channels: of each projection (paper: 256, so 768 after concatenation).
            norm: a detectron2 norm on the concatenation ("BN": the paper; "" none).
            align_corners: of the bilinear resize (True: Caffe's Interp / PyTorch 0.3's Upsample).
        """
        super().__init__()
        self.reduce = nn.ModuleList(
            _xavier(Conv2d(c, channels, 1, activation=F.relu)) for c in in_channels
        )
        self.out_channels = channels * len(in_channels)
        self.norm = get_norm(norm, self.out_channels) if norm else nn.Identity()
        self.align_corners = align_corners

    def forward(self, features: List[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        fused = []
        for layer, x in zip(self.reduce, features):
            x = layer(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
            fused.append(x)
        return self.norm(torch.cat(fused, dim=1))


class FSSDVGG(SSDVGG):
    """SSD's reduced VGG16 (conv1_1 ... fc7, as :class:`~.vgg.SSDVGG`), FSSD's conv6/conv7 extra blocks,
    the fusion of conv4_3, fc7 and conv7_2, and the new pyramid.

    Outputs ``fssd1`` ... ``fssd6`` (``fssd7`` at 512), at width 1 with channels 512, 512, 256, ... and
    SSD's prior steps as strides (300: 8, 16, 32, 64, 100, 300; 512: 8, ..., 512); map sizes 38, 19, 10,
    5, 3, 1 (300) or 64, 32, 16, 8, 4, 2, 1 (512).
    """

    EXTRA_BLOCKS = {300: _FSSD_EXTRA_BLOCKS, 512: _FSSD_EXTRA_BLOCKS}

    def __init__(
        self,
        *,
        input_size: int = 300,
        width_ratio: float = 1.0,
        norm: str = "",
        fusion_channels: int = 256,
        fusion_norm: str = "BN",
        align_corners: bool = True,
    ):
        """
        Args:
            input_size, width_ratio, norm: as :class:`~.vgg.SSDVGG` (``norm`` is VGG16's; width_ratio also
                scales the fusion and pyramid channels).
            fusion_channels: of each fusion projection at width 1 (paper: 256).
            fusion_norm: the norm after the concatenation (paper: "BN"; "SyncBN" for multi-GPU BN).
            align_corners: of the fusion's bilinear resize.
        """
        super().__init__(input_size=input_size, width_ratio=width_ratio, norm=norm, l2norm_scale=None)

        def width(c):
            return max(1, int(round(c * width_ratio)))

        self.fusion = FeatureFusion(
            [self._out_feature_channels[name] for name in _FUSION_SOURCES],
            channels=width(fusion_channels), norm=fusion_norm, align_corners=align_corners,
        )  # fmt: skip
        cin = self.fusion.out_channels
        names = []
        for i, (out, kernel, stride, padding) in enumerate(_PYRAMID[input_size], start=1):
            name = f"fssd{i}"
            self.add_module(name, _xavier(Conv2d(cin, width(out), kernel, stride, padding, activation=F.relu)))
            cin = width(out)
            names.append(name)
        self._out_features = names
        self._out_feature_strides = dict(zip(names, self.STRIDES[input_size]))
        self._out_feature_channels = {name: getattr(self, name).out_channels for name in names}

    def forward(self, x) -> Dict[str, Tensor]:
        """
        Args:
            x: (N, 3, H, W) with H, W <= input_size.

        Returns:
            dict of the pyramid's names to (N, C, Hi, Wi).
        """
        sources = {}
        for name in self._stages:
            x = getattr(self, name)(x)
            if name in _FUSION_SOURCES:
                sources[name] = x
        x = self.fusion([sources[name] for name in _FUSION_SOURCES])
        outputs = {}
        for name in self._out_features:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs
