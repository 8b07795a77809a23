"""SSD's "reduced" VGG16 as a detectron2 Backbone, and the converter from torchvision's VGG16 weights.

The network of the SSD paper (Liu et al., ECCV 2016, §3) and its Caffe recipe: VGG16's conv1_1-conv5_3
(2x2 max-pools rounding up, as Caffe's), pool5 as 3x3 stride 1, fc6 as a 3x3 convolution with dilation 6
and fc7 as a 1x1 convolution (1024 channels each, subsampled from VGG's fully connected layers), an L2
normalisation with a learnable per-channel scale (init 20) on conv4_3, then the extra layers:

    SSD300: conv6_2 10x10, conv7_2 5x5, conv8_2 3x3, conv9_2 1x1   (6 maps with conv4_3 38x38, fc7 19x19)
    SSD512: conv6_2 .. conv9_2 16, 8, 4, 2, conv10_2 1x1          (7 maps with conv4_3 64x64, fc7 32x32)

``width_ratio`` and ``norm`` shrink the network and add BatchNorm/GroupNorm to VGG16 for from-scratch
demos; the defaults are the paper's network.

Warm start: ``train.init_checkpoint = "torchvision-vgg16://IMAGENET1K_V1"`` downloads torchvision's
ImageNet VGG16 once, converts it (:func:`convert_torchvision_vgg16`) and caches the result under
``$D2IMBALANCE_CACHE``; ``python -m d2imbalance.modeling.vgg vgg16.pth out.pth`` converts a local file.
"""
import argparse
import functools
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._compat import require_detectron2
from ..checkpoint import save_backbone_checkpoint

require_detectron2("d2imbalance.modeling.vgg")
from detectron2.layers import Conv2d, ShapeSpec, get_norm  # noqa: E402
from detectron2.modeling import Backbone  # noqa: E402
from detectron2.utils.file_io import PathHandler, PathManager  # noqa: E402
from fvcore.nn import weight_init  # noqa: E402

__all__ = ["L2Norm", "SSDVGG", "convert_torchvision_vgg16", "TorchvisionVGG16Handler"]

_VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# Extra blocks conv6 .. conv9 (conv10 for SSD512): a 1x1 convolution to `mid` channels, then a
# kernel x kernel convolution to `out` channels (an output map) with the given stride and padding.
# (mid, out, kernel, stride, padding), from the Caffe recipes' AddExtraLayers.
_EXTRA_BLOCKS = {
    300: ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)),
    512: ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1)),
}
# The prior "step" of each output map in the Caffe recipes (ssd_pascal.py: steps = [8, 16, ...]); the
# 3x3 and 1x1 maps of SSD300 use 100 and 300 so their default boxes are centred in the image.
_STRIDES = {300: (8, 16, 32, 64, 100, 300), 512: (8, 16, 32, 64, 128, 256, 512)}


class L2Norm(nn.Module):
    """Normalise each position's channel vector to unit L2 norm, then scale each channel by a learnable
    factor (SSD's conv4_3 normalisation, ParseNet; Caffe's Normalize layer with channel_shared=false)."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x):
        return x / (x.norm(dim=1, keepdim=True) + self.eps) * self.weight.view(1, -1, 1, 1)


class SSDVGG(Backbone):
    """SSD's reduced VGG16 plus the SSD300 or SSD512 extra layers.

    Outputs (name: channels at width_ratio=1, stride = the recipe's prior step):
    conv4_3 (L2-normalised): 512, 8; fc7: 1024, 16; conv6_2: 512, 32; conv7_2: 256, 64;
    conv8_2: 256, 100 | 128; conv9_2: 256, 300 | 256; conv10_2 (SSD512 only): 256, 512.

    Images are padded to ``input_size`` squared (``padding_constraints``), the size SSD is built for.

    Subclasses (FSSD's :class:`~.fssd.FSSDVGG`, RefineDet's :class:`~.refinedet.RefineDetVGG`) change the
    network through class attributes: ``EXTRA_BLOCKS`` ({input_size: ((mid, out, kernel, stride, padding),
    ...)}, blocks conv6, conv7, ...), ``STRIDES`` ({input_size: one stride per output}), ``POOL5`` (kernel,
    stride, padding), ``FC6_DILATION`` and ``VGG_OUTPUTS`` (the VGG16 layers output before the extra
    layers). An output ``name`` is L2-normalised when the module has a ``{name}_norm`` (:class:`L2Norm`).
    """

    EXTRA_BLOCKS = _EXTRA_BLOCKS
    STRIDES = _STRIDES
    POOL5 = (3, 1, 1)  # SSD: stride 1, so fc7 keeps conv5_3's resolution
    FC6_DILATION = 6
    VGG_OUTPUTS = ("conv4_3", "fc7")

    def __init__(
        self, *, input_size: int = 300, width_ratio: float = 1.0, norm: str = "", l2norm_scale: Optional[float] = 20.0
    ):
        """
        Args:
            input_size: 300 (SSD300: 6 output maps) or 512 (SSD512: 7 output maps).
            width_ratio: multiplies every layer's channel count (1 = the paper's VGG16).
            norm: "" (the paper), or a detectron2 norm ("BN", "GN", "SyncBN", ...) after every
                convolution of VGG16 (conv1_1 ... fc7), for training from scratch. "GN" has
                32 * width_ratio groups: the full network's 32, each as many channels wide as at width 1
                (4 groups at width 1/8), so width_ratio must be a multiple of 1/32.
            l2norm_scale: initial scale of the conv4_3 L2 normalisation; None: no normalisation (conv4_3
                is output as it is, e.g. for FSSD, which fuses conv4_3 without it).
        """
        super().__init__()
        if input_size not in self.EXTRA_BLOCKS:
            raise ValueError(
                f"input_size={input_size}: {type(self).__name__} is built for input sizes "
                f"{sorted(self.EXTRA_BLOCKS)}; use one of them."
            )
        if width_ratio <= 0:
            raise ValueError(f"width_ratio={width_ratio} must be positive (1.0 = the paper's VGG16).")
        self.input_size = input_size

        def width(c):
            return max(1, int(round(c * width_ratio)))

        if norm == "GN":  # every channel count is a multiple of 32 * width_ratio when that is an integer
            groups = 32 * width_ratio
            if groups != int(groups):
                raise ValueError(
                    f"norm='GN' at width_ratio={width_ratio} would need 32 * width_ratio = {groups} groups; use a "
                    "width_ratio of k/32 (e.g. 1/8) or norm='BN'."
                )
            norm = functools.partial(nn.GroupNorm, int(groups))

        def conv(name, cin, cout, kernel, stride=1, padding=0, dilation=1, layer_norm=norm):
            layer = Conv2d(
                cin, cout, kernel, stride=stride, padding=padding, dilation=dilation,
                bias=not layer_norm, norm=get_norm(layer_norm, cout), activation=F.relu,
            )  # fmt: skip
            self.add_module(name, layer)
            self._stages.append(name)
            return layer

        self._stages: List[str] = []
        cin = 3
        for block, (cout, repeats) in enumerate(_VGG16_BLOCKS, start=1):
            cout = width(cout)
            for i in range(1, repeats + 1):
                weight_init.c2_msra_fill(conv(f"conv{block}_{i}", cin, cout, 3, padding=1))
                cin = cout
            pool = nn.MaxPool2d(*self.POOL5) if block == 5 else nn.MaxPool2d(2, 2, ceil_mode=True)
            self.add_module(f"pool{block}", pool)
            self._stages.append(f"pool{block}")
        # on the conv4_3 output only, not pool4's input
        self.conv4_3_norm = L2Norm(width(512), l2norm_scale) if l2norm_scale is not None else None
        fc = width(1024)
        weight_init.c2_msra_fill(conv("fc6", cin, fc, 3, padding=self.FC6_DILATION, dilation=self.FC6_DILATION))
        weight_init.c2_msra_fill(conv("fc7", fc, fc, 1))
        cin = fc
        names = list(self.VGG_OUTPUTS)
        # The extra layers are the paper's (no norm): their last maps are 1x1, where BatchNorm would
        # normalise one value per image and channel.
        for block, (mid, out, kernel, stride, padding) in enumerate(self.EXTRA_BLOCKS[input_size], start=6):
            first = conv(f"conv{block}_1", cin, width(mid), 1, layer_norm="")
            cin = width(out)
            second = conv(f"conv{block}_2", width(mid), cin, kernel, stride, padding, layer_norm="")
            for layer in (first, second):  # Caffe's "xavier" filler for the new layers
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
            names.append(f"conv{block}_2")
        self._out_features = names
        self._out_feature_strides = dict(zip(names, self.STRIDES[input_size]))
        self._out_feature_channels = {name: getattr(self, name).out_channels for name in names}

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"square_size": self.input_size}

    def forward(self, x):
        """
        Args:
            x: (N, 3, H, W) with H, W <= input_size.

        Returns:
            dict of the output names to (N, C, Hi, Wi).
        """
        outputs = {}
        for name in self._stages:
            x = getattr(self, name)(x)
            if name in self._out_feature_strides:
                norm = getattr(self, f"{name}_norm", None)
                outputs[name] = norm(x) if norm is not None else x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


def convert_torchvision_vgg16(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map ``torchvision.models.vgg16().state_dict()`` onto :class:`SSDVGG` (``norm=""``,
    ``width_ratio=1``) parameter names.

    The 13 convolutions are copied. fc6 (4096 x 512*7*7) becomes a 3x3 convolution and fc7 (4096 x 4096)
    a 1x1 convolution by keeping every 4th output (and, for fc7, input) channel and, for fc6, every 3rd
    spatial position: the "subsample parameters from fc6 and fc7" of the SSD paper, as the
    VGG_ILSVRC_16_layers_fc_reduced model it starts from (DeepLab's decimation). fc8 is dropped.

    Raises:
        ValueError: when ``state_dict`` is not a plain torchvision VGG16 (e.g. vgg16_bn or another depth).
    """
    names, indices, index = [], [], 0  # torchvision's features: conv, ReLU per convolution, a pool per block
    for block, (_, repeats) in enumerate(_VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            names.append(f"conv{block}_{i}")
            indices.append(index)
            index += 2
        index += 1
    expected = {f"features.{i}.weight": None for i in indices}
    expected.update({"classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096)})
    for key, shape in expected.items():
        if key not in state_dict or (shape is not None and tuple(state_dict[key].shape) != shape):
            found = tuple(state_dict[key].shape) if key in state_dict else "missing"
            raise ValueError(
                f"{key} is {found}: not a torchvision VGG16 state_dict. Pass "
                "torchvision.models.vgg16(weights=...).state_dict() (not vgg16_bn or another depth)."
            )
    out = {}
    for name, index in zip(names, indices):
        out[f"{name}.weight"] = state_dict[f"features.{index}.weight"]
        out[f"{name}.bias"] = state_dict[f"features.{index}.bias"]
    fc6 = state_dict["classifier.0.weight"].view(4096, 512, 7, 7)
    out["fc6.weight"] = fc6[::4, :, ::3, ::3].contiguous()
    out["fc6.bias"] = state_dict["classifier.0.bias"][::4].contiguous()
    out["fc7.weight"] = state_dict["classifier.3.weight"][::4, ::4, None, None].contiguous()
    out["fc7.bias"] = state_dict["classifier.3.bias"][::4].contiguous()
    return out


def _torchvision_vgg16_state_dict(weights_name: str) -> Dict[str, torch.Tensor]:
    """torchvision's VGG16 weights (downloaded once into torch.hub's cache)."""
    import torchvision

    try:
        weights = torchvision.models.VGG16_Weights[weights_name]
    except KeyError:
        names = [w.name for w in torchvision.models.VGG16_Weights]
        raise ValueError(f"torchvision has no VGG16 weights {weights_name!r}; available: {names}.") from None
    return weights.get_state_dict(progress=False)


class TorchvisionVGG16Handler(PathHandler):
    """Resolves ``torchvision-vgg16://<VGG16_Weights name>`` (e.g. IMAGENET1K_V1) to a converted
    checkpoint cached as ``$D2IMBALANCE_CACHE/ssd_vgg16_<name>.pth``."""

    PREFIX = "torchvision-vgg16://"

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_local_path(self, path, **kwargs):
        from ..data.shapes import default_cache_root

        name = path[len(self.PREFIX) :]
        target = default_cache_root() / f"ssd_vgg16_{name}.pth"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            converted = convert_torchvision_vgg16(_torchvision_vgg16_state_dict(name))
            save_backbone_checkpoint(converted, f"torchvision VGG16 {name}", target)
        return str(target)


PathManager.register_handler(TorchvisionVGG16Handler())


def main(argv=None) -> None:
    """``python -m d2imbalance.modeling.vgg torchvision_vgg16.pth ssd_vgg16.pth``"""
    parser = argparse.ArgumentParser(description="Convert torchvision VGG16 weights for SSD's backbone.")
    parser.add_argument("source", help="a torchvision VGG16 state_dict file (e.g. vgg16-397923af.pth)")
    parser.add_argument("target", help="where to write the detectron2 checkpoint (train.init_checkpoint)")
    args = parser.parse_args(argv)
    converted = convert_torchvision_vgg16(torch.load(args.source, map_location="cpu"))
    save_backbone_checkpoint(converted, f"torchvision VGG16 from {args.source}", args.target)
    print(f"Wrote {len(converted)} backbone tensors to {args.target}")


if __name__ == "__main__":
    main()
