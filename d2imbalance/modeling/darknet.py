"""Darknet-53 (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018, Table 1) as a detectron2
Backbone, and the convolution block the YOLOv3 neck shares with it.

The network of yolov3.cfg's first 75 layers (pjreddie/darknet): a 3x3 convolution to 32 channels, then
five stages, each a 3x3 stride-2 convolution doubling the channels followed by 1, 2, 8, 8 and 4 residual
blocks (a 1x1 convolution halving the channels, a 3x3 convolution restoring them, the input added). Every
convolution is bias-free and followed by BatchNorm and LeakyReLU(0.1) (Darknet's ``batch_normalize=1``,
``activation=leaky``); Darknet pads a k x k convolution by k // 2, as here.

Outputs: ``dark3`` (the third stage, 256 channels, stride 8), ``dark4`` (512, 16) and ``dark5`` (1024, 32),
YOLOv3's route layers 36, 61 and 74. ``width_ratio`` scales every width for from-scratch CPU demos; 1 is
the paper's network. :meth:`Darknet53.darknet_layers` lists the (convolution, BatchNorm) pairs in the
order of Darknet's ``.weights`` files (:mod:`.darknet_weights`).
"""
from typing import Dict, List, Sequence, Tuple

from torch import Tensor, nn

from .._compat import require_detectron2

require_detectron2("d2imbalance.modeling.darknet")
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import Backbone  # noqa: E402

__all__ = ["darknet_init", "DarknetConv", "DarknetResidual", "Darknet53", "DARKNET53_STAGES"]

#: (output channels, residual blocks) of the five stride-2 stages of Darknet-53 (paper Table 1).
DARKNET53_STAGES = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))
_STEM_CHANNELS = 32


def darknet_init(conv: nn.Conv2d) -> None:
    """Darknet's initialisation (``make_convolutional_layer``): weights normal with standard deviation
    sqrt(2 / (k * k * in_channels)), biases 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DarknetConv(nn.Sequential):
    """Darknet's ``[convolutional]`` with ``batch_normalize=1``: a bias-free k x k convolution padded by
    k // 2, BatchNorm (epsilon 1e-5 on the variance, as Darknet's cuDNN build; its CPU build adds 1e-6
    to the standard deviation instead) and LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1),
        )
        darknet_init(self.conv)

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]

    @property
    def norm(self) -> nn.BatchNorm2d:
        return self[1]


class DarknetResidual(nn.Module):
    """A 1x1 convolution to half the channels, a 3x3 convolution back, plus the input (``[shortcut]``
    with ``activation=linear``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce = DarknetConv(channels, channels // 2, 1)
        self.expand = DarknetConv(channels // 2, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.reduce(x))


def _scaled(channels: int, width_ratio: float) -> int:
    return max(2, int(round(channels * width_ratio)))


class Darknet53(Backbone):
    """Darknet-53 without its classifier: outputs ``dark1`` .. ``dark5`` at strides 2 .. 32."""

    def __init__(
        self,
        *,
        width_ratio: float = 1.0,
        out_features: Sequence[str] = ("dark3", "dark4", "dark5"),
        stages: Sequence[Tuple[int, int]] = DARKNET53_STAGES,
    ):
        """
        Args:
            width_ratio: multiplies every layer's channels (1: the paper's 32 .. 1024).
            out_features: a subset of ``dark1`` .. ``dark5`` (YOLOv3: dark3, dark4, dark5).
            stages: (channels, residual blocks) per stride-2 stage; the default is Darknet-53.
        """
        super().__init__()
        if width_ratio <= 0:
            raise ValueError(f"width_ratio={width_ratio} must be > 0 (1 is the paper's Darknet-53).")
        names = [f"dark{i}" for i in range(1, len(stages) + 1)]
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(f"out_features={list(out_features)} must be a non-empty subset of {names}.")
        # Stages after the last requested output are not built: they would be unused parameters.
        last = max(names.index(f) for f in out_features)
        self.stem = DarknetConv(3, _scaled(_STEM_CHANNELS, width_ratio), 3)
        in_channels = self.stem.conv.out_channels
        self._out_feature_channels: Dict[str, int] = {}
        self._out_feature_strides: Dict[str, int] = {}
        self.stage_names: List[str] = []
        for index, ((channels, blocks), name) in enumerate(zip(stages[: last + 1], names), start=1):
            channels = _scaled(channels, width_ratio)
            stage = nn.Sequential(
                DarknetConv(in_channels, channels, 3, stride=2), *[DarknetResidual(channels) for _ in range(blocks)]
            )
            self.add_module(name, stage)
            self.stage_names.append(name)
            self._out_feature_channels[name] = channels
            self._out_feature_strides[name] = 2**index
            in_channels = channels
        self._out_features = list(out_features)

    @property
    def size_divisibility(self) -> int:
        return self._out_feature_strides[self.stage_names[-1]]

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        outputs = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }

    def darknet_layers(self) -> List[DarknetConv]:
        """The convolution blocks in Darknet's layer order (yolov3.cfg layers 0 .. 73 for all five
        stages; the shortcut layers carry no weights)."""
        return [m for m in self.modules() if isinstance(m, DarknetConv)]
