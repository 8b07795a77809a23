"""DSSD (Fu, Liu, Ranga, Tyagi, Berg, "DSSD: Deconvolutional Single Shot Detector", arXiv 1701.06659)
as an SSD: DSSD321 / DSSD513 are :class:`~.ssd.SSD` (its matching, 3:1 mined loss and inference
unchanged) on :class:`DSSDResNet` (ResNet-101, SSD's extra layers, the deconvolution "hourglass") with
:class:`DSSDHead` (the prediction module before SSD's class and box convolutions).

The network follows the paper; where the paper leaves a detail open, the authors' Caffe scripts
(chengyangfu/caffe, branch dssd: examples/ssd/ssd_pascal_resnet_deconv_321.py,
ssd_coco_resnet_deconv_513.py) are followed, as noted:

* encoder (paper §3, "Using Residual-101 in place of VGG", Table 1): detectron2's ResNet-101 (its
  parameter names, so detectron2's MSRA ``R-101.pkl`` warm-starts it). conv3_x (``res3``) and conv5_x
  (``res5``) are sources; conv5_x keeps stride 16 with dilation 2 (the Caffe ``use_dilation_conv5``) so
  that DSSD321's maps are 40 (conv3_x) and 20 (conv5_x), as Table 1; the stem's max-pool is Caffe's (no
  padding, rounding up), the pooling the MSRA weights were trained with and the one that gives 321 -> 80
  -> 40 (detectron2's padded pool gives 81 -> 41). Then the extra layers conv6_x ... (§3: residual
  layers after conv5_x), each a bottleneck residual block (256, 256, 1024 channels, projection shortcut)
  whose first convolution and shortcut have the geometry of the Caffe scripts: DSSD321 20 -> 10 -> 5
  (2x2 stride 2) -> 3 -> 1 (3x3 without padding); DSSD513 32 -> 16 -> 8 -> 4 -> 2 -> 1 (2x2 stride 2).
  They have no norm by default, as SSD's extra layers (the Caffe scripts put BatchNorm in them; the last
  block's map is 1x1, where PyTorch's BatchNorm refuses a single image per device, and the DSSD513
  script trains one image per GPU, which Caffe's BatchNorm tolerates); ``extra_norm`` sets one.
* decoder (§3, "Deconvolutional SSD" and "Deconvolution Module", Fig. 1 and 3): from the top encoder map
  down to conv3_x's size, one :class:`DeconvolutionModule` per level: the deeper map through a
  deconvolution, a 3x3 convolution and BN; the encoder map of that level through 3x3 conv, BN, ReLU, 3x3
  conv, BN; their element-wise product, then ReLU (512 channels). The paper's deconvolution is 2x2
  stride 2; where the map does not double (DSSD321 1 -> 3 -> 5) it has stride 1 and kernel
  ``out - in + 1`` (3, the Caffe script's choice), so no map is cropped or padded (:func:`deconv_geometry`).
  DSSD513's 1 -> 2 is a doubling (the script's 2x2 stride 1 gives the same map from one pixel).
* predictions (§3, "Prediction module", Fig. 1 and 2): the decoder maps (DSSD321: 40, 20, 10, 5, 3) and
  the top encoder map (1x1), each through the prediction module of Fig. 2 (c)
  (:class:`PredictionModule`), then SSD's 3x3 class and box convolutions.
* default boxes (§3, "Training"): aspect ratios 1.6, 2 and 3 (with their inverses, as SSD's ``flip``) on
  every map, plus SSD's two squares: 8 boxes per location, 17080 for DSSD321 and 43688 for DSSD513.

Training departs from the paper (§3, "Training"): the paper trains SSD (ResNet-101 + extra layers)
first, then the deconvolution module with the SSD part frozen, then (VOC) fine-tunes everything; here
the whole network is trained end-to-end in one stage from the ImageNet ResNet, as the configs say.
"""
from typing import Dict, List, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import require_detectron2
from .ssd import SSDHead

require_detectron2("d2imbalance.modeling.dssd")
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm  # noqa: E402
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet  # noqa: E402
from fvcore.nn import weight_init  # noqa: E402

__all__ = [
    "CaffeMaxPoolStem",
    "DSSDHead",
    "DSSDResNet",
    "DeconvolutionModule",
    "ExtraResBlock",
    "PredictionModule",
    "deconv_geometry",
]

_RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Extra residual blocks after conv5_x: (kernel, stride) of their first convolution and shortcut.
_EXTRA_BLOCKS = {321: ((2, 2), (2, 2), (3, 1), (3, 1)), 513: ((2, 2),) * 5}
# Prior steps of the prediction maps (conv3_x first). 321: the 3x3 and 1x1 maps' boxes centred in the
# image (321 / 3, 321), as SSD300's 100 and 300; 513: the Caffe script's steps.
_STRIDES = {321: (8, 16, 32, 64, 107, 321), 513: (8, 16, 32, 64, 128, 256, 513)}
# The encoder's map sizes (conv3_x, conv5_x, the extra blocks): Table 1's for 321, 64 ... 1 for 513.
_MAP_SIZES = {321: (40, 20, 10, 5, 3, 1), 513: (64, 32, 16, 8, 4, 2, 1)}


def deconv_geometry(in_size: int, out_size: int) -> Tuple[int, int]:
    """(kernel, stride) of the deconvolution (no padding) taking a map of ``in_size`` to ``out_size``:
    2x2 stride 2 when the size doubles (the paper's Fig. 3), else stride 1 with kernel
    ``out_size - in_size + 1`` (the Caffe DSSD321 script's 1 -> 3 and 3 -> 5)."""
    if out_size == 2 * in_size:
        return 2, 2
    if in_size < out_size <= in_size + 2:
        return out_size - in_size + 1, 1
    raise ValueError(
        f"No DSSD deconvolution takes a {in_size}x{in_size} map to {out_size}x{out_size}: the size must "
        f"double or grow by 1 or 2; use input_size 321 or 513."
    )


def _msra(*layers: nn.Module) -> None:
    for layer in layers:
        weight_init.c2_msra_fill(layer)


class CaffeMaxPoolStem(BasicStem):
    """detectron2's ResNet stem (``stem.conv1``: 7x7 stride 2, norm, ReLU) with Caffe's max-pool: 3x3
    stride 2 without padding, rounding up (the MSRA ResNets' pool1; 161 -> 80, 257 -> 128)."""

    def forward(self, x):
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)


class ExtraResBlock(CNNBlockBase):
    """A bottleneck residual block whose first convolution and projection shortcut are ``kernel`` x
    ``kernel`` with ``stride`` and no padding: conv1 (norm, ReLU), 3x3 conv2 (norm, ReLU), 1x1 conv3
    (norm), plus the shortcut (norm), then ReLU. DSSD's extra layers conv6_x ... (§3). Convolutions
    have biases when ``norm`` is "" (none)."""

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, kernel, stride, norm=""):
        super().__init__(in_channels, out_channels, stride)
        bias = not norm
        self.shortcut = Conv2d(
            in_channels, out_channels, kernel, stride, bias=bias, norm=get_norm(norm, out_channels)
        )
        self.conv1 = Conv2d(
            in_channels, bottleneck_channels, kernel, stride, bias=bias,
            norm=get_norm(norm, bottleneck_channels), activation=F.relu,
        )  # fmt: skip
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, 3, padding=1, bias=bias,
            norm=get_norm(norm, bottleneck_channels), activation=F.relu,
        )  # fmt: skip
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=bias, norm=get_norm(norm, out_channels))
        _msra(self.shortcut, self.conv1, self.conv2, self.conv3)

    def forward(self, x):
        return F.relu_(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class DeconvolutionModule(nn.Module):
    """The deconvolution module of Fig. 3: ``deep`` -> deconvolution -> 3x3 conv -> norm; ``skip`` (the
    encoder map of the output's size) -> 3x3 conv -> norm -> ReLU -> 3x3 conv -> norm; element-wise
    product; ReLU."""

    def __init__(
        self, deep_channels: int, skip_channels: int, *, channels: int = 512, kernel: int = 2, stride: int = 2,
        norm: str = "BN",
    ):  # fmt: skip
        """
        Args:
            deep_channels, skip_channels: of the deeper (decoder) map and of the encoder map.
            channels: of every layer of the module (paper: 512).
            kernel, stride: of the deconvolution (:func:`deconv_geometry`; paper: 2, 2).
            norm: after each 3x3 convolution (paper: "BN").
        """
        super().__init__()
        self.deconv = nn.ConvTranspose2d(deep_channels, channels, kernel, stride)
        self.deconv_conv = Conv2d(channels, channels, 3, padding=1, bias=not norm, norm=get_norm(norm, channels))
        self.skip_conv1 = Conv2d(
            skip_channels, channels, 3, padding=1, bias=not norm, norm=get_norm(norm, channels), activation=F.relu
        )
        self.skip_conv2 = Conv2d(channels, channels, 3, padding=1, bias=not norm, norm=get_norm(norm, channels))
        _msra(self.deconv, self.deconv_conv, self.skip_conv1, self.skip_conv2)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        up = self.deconv_conv(self.deconv(deep))
        if up.shape[-2:] != skip.shape[-2:]:
            raise ValueError(
                f"The deconvolution gives {tuple(up.shape[-2:])} but the encoder map is {tuple(skip.shape[-2:])}; "
                f"choose kernel and stride with deconv_geometry({deep.shape[-1]}, {skip.shape[-1]})."
            )
        return F.relu(up * self.skip_conv2(self.skip_conv1(skip)))


class PredictionModule(nn.Module):
    """The prediction module of Fig. 2 (c): 1x1 convolutions to ``mid``, ``mid`` and ``out`` channels
    (ReLU after the first two) plus a 1x1 projection of the input to ``out``, summed.

    The figure shows the three 1x1 convolutions and the projection; the ReLUs between them are ours
    (without them the module would be one linear 1x1 convolution). The Caffe scripts use a bottleneck
    ResNet block instead (3x3 middle convolution, BatchNorm, ReLU after the sum).
    """

    def __init__(self, in_channels: int, *, mid_channels: int = 256, out_channels: int = 1024):
        super().__init__()
        self.conv1 = Conv2d(in_channels, mid_channels, 1, activation=F.relu)
        self.conv2 = Conv2d(mid_channels, mid_channels, 1, activation=F.relu)
        self.conv3 = Conv2d(mid_channels, out_channels, 1)
        self.shortcut = Conv2d(in_channels, out_channels, 1)
        _msra(self.conv1, self.conv2, self.conv3, self.shortcut)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x)


class DSSDHead(SSDHead):
    """:class:`~.ssd.SSDHead` (3x3 class and box convolutions, Xavier) on the output of one
    :class:`PredictionModule` per map. ``in_channels`` are the backbone maps' channels."""

    def __init__(
        self, *, input_shape: List[ShapeSpec], num_classes: int, num_anchors: List[int],
        prediction_channels: Tuple[int, int] = (256, 1024),
    ):  # fmt: skip
        """
        Args:
            input_shape, num_classes, num_anchors: as :class:`~.ssd.SSDHead` (DSSD: 8 boxes per location).
            prediction_channels: (mid, out) channels of the prediction modules (paper: 256, 1024).
        """
        mid, out = prediction_channels
        super().__init__(input_shape=[ShapeSpec(channels=out)] * len(input_shape), num_classes=num_classes,
                         num_anchors=num_anchors)  # fmt: skip
        self.in_channels = [s.channels for s in input_shape]
        self.prediction = nn.ModuleList(
            PredictionModule(c, mid_channels=mid, out_channels=out) for c in self.in_channels
        )

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        return super().forward([module(x) for module, x in zip(self.prediction, features)])


class DSSDResNet(ResNet):
    """ResNet (stem, ``res2`` ... ``res5``: detectron2's names), the extra residual blocks ``res6`` ...,
    and the decoder's deconvolution modules ``deconv3``, ``deconv5``, ``deconv6`` ...

    Outputs, at width 1 (name: channels, stride = prior step, map size):
    DSSD321: deconv3 512, 8, 40; deconv5 512, 16, 20; deconv6 512, 32, 10; deconv7 512, 64, 5;
    deconv8 512, 107, 3; res9 1024, 321, 1. DSSD513: deconv3 ... deconv9 512 (64, 32, 16, 8, 4, 2;
    strides 8 ... 256) and res10 1024, 513, 1. Images are padded to ``input_size`` squared.
    """

    def __init__(
        self,
        *,
        input_size: int = 321,
        depth: int = 101,
        width_ratio: float = 1.0,
        norm: str = "FrozenBN",
        freeze_at: int = 2,
        extra_norm: str = "",
        decoder_norm: str = "BN",
        decoder_channels: int = 512,
    ):
        """
        Args:
            input_size: 321 or 513 (the paper's DSSD321 / DSSD513).
            depth: of the ResNet, 50, 101 (paper) or 152.
            width_ratio: scales every channel count (1: the paper's; < 1 for from-scratch demos, which
                no checkpoint fits).
            norm: of the ResNet ("FrozenBN": detectron2's ImageNet-initialised ResNets; "BN" from scratch).
            freeze_at: ResNet stages frozen, as detectron2's (2: the stem and res2).
            extra_norm: of the extra residual blocks ("": none, as SSD's extra layers; the Caffe scripts:
                BatchNorm, which needs more than one image per device on the 1x1 map).
            decoder_norm: after the 3x3 convolutions of the deconvolution modules (paper: "BN").
            decoder_channels: of the deconvolution modules at width 1 (paper: 512).
        """
        if input_size not in _EXTRA_BLOCKS:
            raise ValueError(f"input_size={input_size}: DSSD is built for 321 or 513 (DSSD321, DSSD513).")
        if depth not in _RESNET_BLOCKS:
            raise ValueError(f"depth={depth}: DSSD needs a bottleneck ResNet (dilated conv5_x), 50, 101 or 152.")

        def width(c):
            return max(1, int(round(c * width_ratio)))

        stem = CaffeMaxPoolStem(out_channels=width(64), norm=norm)
        stages, in_channels = [], width(64)
        for i, num_blocks in enumerate(_RESNET_BLOCKS[depth]):
            out_channels = width(256 * 2**i)
            dilation = 2 if i == 3 else 1  # conv5_x at stride 16, dilated (Table 1)
            first_stride = 2 if i in (1, 2) else 1
            stages.append(
                ResNet.make_stage(
                    BottleneckBlock, num_blocks, stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                    in_channels=in_channels, out_channels=out_channels, bottleneck_channels=width(64 * 2**i),
                    stride_in_1x1=True, norm=norm, dilation=dilation,
                )  # fmt: skip
            )
            in_channels = out_channels
        super().__init__(stem, stages, out_features=["res3", "res5"], freeze_at=freeze_at)
        self.input_size = input_size

        encoder = ["res3", "res5"]
        channels = {name: self._out_feature_channels[name] for name in encoder}
        for i, (kernel, stride) in enumerate(_EXTRA_BLOCKS[input_size], start=6):
            name = f"res{i}"
            block = ExtraResBlock(
                channels[encoder[-1]], width(1024), bottleneck_channels=width(256), kernel=kernel, stride=stride,
                norm=extra_norm,
            )  # fmt: skip
            self.add_module(name, block)
            channels[name] = block.out_channels
            encoder.append(name)
        self._encoder = encoder

        sizes = dict(zip(encoder, _MAP_SIZES[input_size]))
        decoder, deep_channels = [], channels[encoder[-1]]
        for name in reversed(encoder[:-1]):
            out_name = name.replace("res", "deconv")
            kernel, stride = deconv_geometry(sizes[encoder[encoder.index(name) + 1]], sizes[name])
            self.add_module(
                out_name,
                DeconvolutionModule(
                    deep_channels, channels[name], channels=width(decoder_channels), kernel=kernel, stride=stride,
                    norm=decoder_norm,
                ),
            )  # fmt: skip
            deep_channels = width(decoder_channels)
            decoder.append(out_name)
        self._decoder = decoder  # deepest first

        names = decoder[::-1] + [encoder[-1]]
        self._out_features = names
        self._out_feature_strides = dict(zip(names, _STRIDES[input_size]))
        self._out_feature_channels = {name: width(decoder_channels) for name in decoder}
        self._out_feature_channels[encoder[-1]] = channels[encoder[-1]]

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"square_size": self.input_size}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: (N, 3, H, W) padded to input_size squared.

        Returns:
            dict of the prediction maps' names (conv3_x's size first) to (N, C, Hi, Wi).
        """
        encoder = {}
        x = self.stem(x)
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            encoder[name] = x
        for name in self._encoder[2:]:
            x = getattr(self, name)(x)
            encoder[name] = x
        outputs = {self._encoder[-1]: x}
        for name in self._decoder:
            x = getattr(self, name)(x, encoder[name.replace("deconv", "res")])
            outputs[name] = x
        return {name: outputs[name] for name in self._out_features}
