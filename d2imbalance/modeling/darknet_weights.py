"""Darknet's binary ``.weights`` files: read, load into Darknet-53 / YOLOv3 modules, write.

The format of pjreddie/darknet ``src/parser.c`` (``load_weights_upto``, ``load_convolutional_weights``,
``save_weights_upto``), all little-endian:

    int32 major, int32 minor, int32 revision
    seen: uint64 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000, else int32
    then, per weighted layer in cfg order, float32 arrays; a ``[convolutional]`` layer of n filters stores
        batch_normalize=1: biases (n, BatchNorm's beta), scales (n, gamma), rolling_mean (n),
                           rolling_variance (n), weights (n x c/groups x k x k, torch's layout)
        batch_normalize=0: biases (n), weights

Darknet writes version 0.2.0 with a 64-bit ``seen``; files of versions before 0.2 have a 32-bit one. There is
no layer count or shape in the file: the floats are matched to the network by order alone, so a layer list
that differs from the file's network is detected only when the counts do not add up.

Partial files: ``darknet53.conv.74`` (``darknet partial ... 74``: the first 74 layers of darknet53.cfg, the 52
convolutions of the backbone) holds the first layers of a network only. :func:`load_darknet_weights` fills
layers in order until the file ends and returns how many it filled; the others keep their values. A file
that ends inside a layer, or has floats left after the last layer, raises ValueError (the network is not
the file's), and nothing is changed.

Warm start: ``train.init_checkpoint = "darknet53:///data/darknet53.conv.74"`` loads the file into a
:class:`~.darknet.Darknet53` (all 52 convolutions must be filled) and caches the result as a detectron2
checkpoint of ``backbone.*`` under ``$D2IMBALANCE_CACHE``; ``python -m d2imbalance.modeling.darknet_weights
darknet53.conv.74 out.pth`` converts a file.
"""

import argparse
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._compat import require_detectron2

require_detectron2("d2imbalance.modeling.darknet_weights")
from detectron2.utils.file_io import PathHandler, PathManager  # noqa: E402

from .darknet import Darknet53, DarknetConv  # noqa: E402
from ..checkpoint import save_backbone_checkpoint  # noqa: E402

__all__ = [
    "DarknetHeader",
    "read_darknet_header",
    "read_darknet_weights",
    "load_darknet_weights",
    "save_darknet_weights",
    "convert_darknet53_weights",
    "Darknet53WeightsHandler",
]

PathLike = Union[str, os.PathLike]
_HEADER = struct.Struct("<iii")
# The width of the Darknet53 that the darknet53:// prefix and main() fill: Darknet's files are of width 1
# (the tests set a smaller one).
_WIDTH_RATIO = 1.0


@dataclass
class DarknetHeader:
    """The header of a ``.weights`` file: Darknet's version and the number of images trained on."""

    major: int
    minor: int
    revision: int
    seen: int

    @property
    def seen_is_64bit(self) -> bool:
        """parser.c's rule: versions >= 0.2 (and < 1000) store ``seen`` as a 64-bit integer."""
        return _seen_is_64bit(self.major, self.minor)


def _seen_is_64bit(major: int, minor: int) -> bool:
    return (major * 10 + minor) >= 2 and major < 1000 and minor < 1000


def _read_header(f, path: PathLike, size: int) -> DarknetHeader:
    head = f.read(_HEADER.size)
    if len(head) == _HEADER.size:
        major, minor, revision = _HEADER.unpack(head)
        seen_format = "<Q" if _seen_is_64bit(major, minor) else "<i"
        seen_bytes = f.read(struct.calcsize(seen_format))
        if len(seen_bytes) == struct.calcsize(seen_format):
            return DarknetHeader(major, minor, revision, struct.unpack(seen_format, seen_bytes)[0])
    raise ValueError(f"{path}: {size} bytes, shorter than a Darknet .weights header (16 or 20 bytes).")


def read_darknet_header(path: PathLike) -> DarknetHeader:
    """The header of a Darknet ``.weights`` file (reads 20 bytes at most)."""
    with open(path, "rb") as f:
        return _read_header(f, path, os.fstat(f.fileno()).st_size)


def read_darknet_weights(path: PathLike) -> Tuple[DarknetHeader, np.ndarray]:
    """Read a Darknet ``.weights`` file.

    Args:
        path: the file.

    Returns:
        The header, and every float after it (float32, in file order).

    Raises:
        ValueError: when the file is shorter than the header or its body is not whole float32 values.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = _read_header(f, path, size)
        body = size - f.tell()
        if body % 4:
            raise ValueError(
                f"{path}: the {body} bytes after its {f.tell()}-byte header (version {header.major}."
                f"{header.minor}.{header.revision}) are not whole float32 values: not a Darknet .weights file, "
                "or an incomplete one."
            )
        values = np.empty(body // 4, dtype="<f4")
        if f.readinto(memoryview(values).cast("B")) != body:
            raise ValueError(f"{path}: the file changed while it was read; read it again.")
    return header, values.astype(np.float32, copy=False)


def _conv_and_norm(layer: nn.Module, index: int) -> Tuple[nn.Conv2d, Optional[nn.BatchNorm2d]]:
    """(convolution, BatchNorm or None) of a layer list item: a DarknetConv (``batch_normalize=1``), an
    nn.Conv2d with a BatchNorm ``norm`` attribute (detectron2's Conv2d), or a plain nn.Conv2d with bias."""
    if isinstance(layer, DarknetConv):
        conv, norm = layer.conv, layer.norm
    elif isinstance(layer, nn.Conv2d):
        conv, norm = layer, getattr(layer, "norm", None)
    else:
        raise TypeError(
            f"layer {index} is a {type(layer).__name__}: Darknet layers must be DarknetConv (convolution + "
            "BatchNorm) or nn.Conv2d (with bias); pass the model's darknet_layers()."
        )
    if norm is not None:
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not norm.affine or norm.running_mean is None:
            raise TypeError(
                f"layer {index} {_describe(conv)} has norm {norm!r}: Darknet's batch_normalize stores an "
                "affine BatchNorm with running statistics."
            )
        if conv.bias is not None:
            raise TypeError(
                f"layer {index} {_describe(conv)} has a bias and a BatchNorm: Darknet's batch_normalize "
                "convolutions have none (BatchNorm's beta is the bias); build it with bias=False."
            )
    elif conv.bias is None:
        raise TypeError(
            f"layer {index} {_describe(conv)} has neither a bias nor a BatchNorm: Darknet stores a bias "
            "for a convolution without batch_normalize; build it with bias=True."
        )
    return conv, norm


def _describe(conv: nn.Conv2d, norm: Optional[nn.Module] = None, with_norm: bool = False) -> str:
    """``(Conv2d weight (out, in, kh, kw)[ + BatchNorm | + bias])``: a layer, as errors name it."""
    kind = (" + BatchNorm" if norm is not None else " + bias") if with_norm else ""
    return f"(Conv2d weight {tuple(conv.weight.shape)}{kind})"


def _tensors(conv: nn.Conv2d, norm: Optional[nn.BatchNorm2d]) -> List[torch.Tensor]:
    """The layer's tensors in the file's order: biases, [scales, rolling_mean, rolling_variance,] weights."""
    if norm is None:
        return [conv.bias, conv.weight]
    return [norm.bias, norm.weight, norm.running_mean, norm.running_var, conv.weight]


def load_darknet_weights(layers: Sequence[nn.Module], path: PathLike) -> int:
    """Copy a ``.weights`` file into the layers, in order.

    Args:
        layers: the network's weighted layers in the file's (cfg) order, e.g. ``model.darknet_layers()``:
            each a DarknetConv (batch_normalize=1) or an nn.Conv2d with bias (batch_normalize=0).
        path: the file; it may hold the first layers only (``darknet53.conv.74``).

    Returns:
        How many layers (from the first) were filled; the others are left as they are.

    Raises:
        ValueError: when the file ends inside a layer or has floats left after the last one (a file of
            another network); the layers are left unchanged.
    """
    parts = [_conv_and_norm(layer, i) for i, layer in enumerate(layers)]
    _, values = read_darknet_weights(path)
    offset, filled = 0, 0
    for index, (conv, norm) in enumerate(parts):
        if offset == len(values):
            break
        need = sum(t.numel() for t in _tensors(conv, norm))
        left = len(values) - offset
        if left < need:
            layer = _describe(conv, norm, with_norm=True)
            raise ValueError(
                f"{path} ends inside layer {index} {layer}: {left} floats are left and that layer needs {need}. "
                f"The file is not of this network (or is truncated); the layers before it take {offset} floats."
            )
        offset += need
        filled += 1
    if offset < len(values):
        raise ValueError(
            f"{path} has {len(values) - offset} floats left over after all {len(parts)} layers (which take "
            f"{offset} of its {len(values)}): it is for a larger network. A full yolov3.weights, for instance, "
            "needs the YOLOv3 model's darknet_layers(), not a Darknet-53 backbone's."
        )
    offset = 0
    with torch.no_grad():
        for conv, norm in parts[:filled]:
            for tensor in _tensors(conv, norm):
                chunk = torch.from_numpy(values[offset : offset + tensor.numel()])
                tensor.copy_(chunk.view(tensor.shape))  # casts to the tensor's dtype and device
                offset += tensor.numel()
    return filled


def save_darknet_weights(
    layers: Sequence[nn.Module], path: PathLike, *, seen: int = 0, version: Tuple[int, int, int] = (0, 2, 0)
) -> None:
    """Write the layers as a Darknet ``.weights`` file (what Darknet's ``save_weights`` writes).

    Args:
        layers: as for :func:`load_darknet_weights`.
        path: the file to write.
        seen: the number of training images for the header.
        version: (major, minor, revision); Darknet writes (0, 2, 0). Versions below 0.2 store ``seen`` as
            int32.
    """
    parts = [_conv_and_norm(layer, i) for i, layer in enumerate(layers)]
    major, minor, revision = (int(v) for v in version)
    if _seen_is_64bit(major, minor):
        seen_bytes = struct.pack("<Q", seen)
    elif 0 <= seen < 2**31:
        seen_bytes = struct.pack("<i", seen)
    else:
        raise ValueError(f"seen={seen} does not fit the int32 of version {major}.{minor}; use version (0, 2, 0).")
    with open(path, "wb") as f:
        f.write(_HEADER.pack(major, minor, revision) + seen_bytes)
        for conv, norm in parts:
            for tensor in _tensors(conv, norm):
                f.write(tensor.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes())


def convert_darknet53_weights(path: PathLike, *, width_ratio: float = 1.0) -> Dict[str, torch.Tensor]:
    """A :class:`~.darknet.Darknet53` state_dict (dark1 .. dark5) from a Darknet-53 backbone ``.weights``
    file (``darknet53.conv.74``).

    Args:
        path: the file.
        width_ratio: of the Darknet53 to fill; 1 for Darknet's files.

    Raises:
        ValueError: when the file does not fill all 52 convolutions, or has more floats (the ImageNet
            classifier's ``darknet53.weights``, whose last 1x1 convolution is the classifier, or a full
            ``yolov3.weights``).
    """
    backbone = Darknet53(width_ratio=width_ratio, out_features=("dark3", "dark4", "dark5"))
    layers = backbone.darknet_layers()
    filled = load_darknet_weights(layers, path)
    if filled != len(layers):
        raise ValueError(
            f"{path} fills only {filled} of Darknet-53's {len(layers)} convolutions: it is not a Darknet-53 "
            "backbone file. Use darknet53.conv.74 (or `darknet partial darknet53.cfg darknet53.weights "
            "darknet53.conv.74 74`)."
        )
    return backbone.state_dict()


class Darknet53WeightsHandler(PathHandler):
    """Resolves ``darknet53://<path of a Darknet-53 .weights file>`` (e.g. ``darknet53:///data/darknet53.conv.74``)
    to a detectron2 checkpoint of ``backbone.*``, cached under ``$D2IMBALANCE_CACHE`` by the file's path,
    size and modification time. The inner path may be anything PathManager resolves (a local file, http)."""

    PREFIX = "darknet53://"
    # detectron2's DetectionCheckpointer.load passes the path through urlparse(path).geturl(), which turns
    # "darknet53:///data/x" (no host) into "darknet53:/data/x": that spelling is accepted too.
    _SHORT_PREFIX = "darknet53:"

    def _get_supported_prefixes(self):
        return [self.PREFIX, self._SHORT_PREFIX]

    def _get_local_path(self, path, **kwargs):
        from ..data.shapes import default_cache_root

        prefix = self.PREFIX if path.startswith(self.PREFIX) else self._SHORT_PREFIX
        source = path[len(prefix) :]
        local = PathManager.get_local_path(source)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"{path}: no file {source!r}; pass darknet53://<path to darknet53.conv.74>.")
        stat = os.stat(local)
        identity = f"{os.path.abspath(local)}|{stat.st_size}|{stat.st_mtime_ns}|{_WIDTH_RATIO}"
        key = hashlib.sha1(identity.encode()).hexdigest()[:10]
        target = default_cache_root() / f"darknet53_{Path(local).name}_{key}.pth"
        if not target.is_file():
            state = convert_darknet53_weights(local, width_ratio=_WIDTH_RATIO)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_backbone_checkpoint(state, f"Darknet-53 from {source}", target)
        return str(target)


PathManager.register_handler(Darknet53WeightsHandler())


def main(argv=None) -> None:
    """``python -m d2imbalance.modeling.darknet_weights darknet53.conv.74 darknet53.pth``"""
    parser = argparse.ArgumentParser(description="Convert Darknet-53 .weights for the Darknet53 backbone.")
    parser.add_argument("source", help="a Darknet-53 .weights file (darknet53.conv.74)")
    parser.add_argument("target", help="where to write the detectron2 checkpoint (train.init_checkpoint)")
    args = parser.parse_args(argv)
    header = read_darknet_header(args.source)
    state = convert_darknet53_weights(args.source, width_ratio=_WIDTH_RATIO)
    save_backbone_checkpoint(state, f"Darknet-53 from {args.source}", args.target)
    print(
        f"Wrote {len(state)} backbone tensors to {args.target} (Darknet {header.major}.{header.minor}."
        f"{header.revision}, seen {header.seen})"
    )


if __name__ == "__main__":
    main()
