"""Darknet's .weights files (d2imbalance.modeling.darknet_weights): a hand-written file pins the order of
the arrays, both header variants, round trips through a random Darknet-53, partial / truncated / oversize
files, and the ``darknet53://`` checkpoint prefix.
"""

import re
import struct

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.detectron2

WIDTH = 0.125  # Darknet-53 at 1/8 width: 52 convolutions, ~0.6M parameters


def _random_darknet53(seed, **kwargs):
    """A Darknet53 whose every parameter and BatchNorm statistic is random (not at its init)."""
    from d2imbalance.modeling import Darknet53

    torch.manual_seed(seed)
    model = Darknet53(width_ratio=WIDTH, **kwargs)
    with torch.no_grad():
        for layer in model.darknet_layers():
            layer.conv.weight.normal_(0, 0.1)
            layer.norm.weight.uniform_(0.5, 1.5)
            layer.norm.bias.normal_(0, 0.1)
            layer.norm.running_mean.normal_(0, 0.1)
            layer.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _floats(layer):
    """The floats a layer takes in a .weights file."""
    return sum(p.numel() for p in layer.parameters()) + sum(b.numel() for b in layer.buffers() if b.is_floating_point())


def _tensors(model):
    """A copy of the model's parameters and buffers (state_dict's tensors are the live ones)."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _write(path, floats, version=(0, 2, 0), seen=0):
    major, minor, revision = version
    seen_format = "<Q" if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else "<i"
    header = struct.pack("<iii", *version) + struct.pack(seen_format, seen)
    path.write_bytes(header + np.asarray(floats, "<f4").tobytes())
    return path


def test_a_hand_written_file_lands_in_beta_gamma_mean_var_weight_then_bias_weight(tmp_path):
    """parser.c's order: batch_normalize=1: biases (beta), scales (gamma), rolling_mean, rolling_variance,
    weights; batch_normalize=0: biases, weights."""
    from d2imbalance.modeling import DarknetConv, load_darknet_weights, save_darknet_weights

    bn_layer, plain = DarknetConv(1, 2, 1), nn.Conv2d(2, 3, 1)
    floats = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] + [11, 12, 13] + [14, 15, 16, 17, 18, 19]
    path = _write(tmp_path / "tiny.weights", floats, seen=7)
    assert load_darknet_weights([bn_layer, plain], path) == 2
    assert bn_layer.norm.bias.tolist() == [1, 2]
    assert bn_layer.norm.weight.tolist() == [3, 4]
    assert bn_layer.norm.running_mean.tolist() == [5, 6]
    assert bn_layer.norm.running_var.tolist() == [7, 8]
    assert bn_layer.conv.weight.flatten().tolist() == [9, 10] and bn_layer.conv.weight.shape == (2, 1, 1, 1)
    assert plain.bias.tolist() == [11, 12, 13]
    assert plain.weight.flatten().tolist() == [14, 15, 16, 17, 18, 19]  # (out, in, kh, kw), row-major
    assert plain.weight[1, 0, 0, 0] == 16

    save_darknet_weights([bn_layer, plain], tmp_path / "again.weights", seen=7)
    assert (tmp_path / "again.weights").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "version, seen, header_bytes",
    [((0, 1, 0), 123_456, 16), ((0, 2, 0), 2**40 + 5, 20), ((0, 2, 5), 64_000, 20), ((1000, 1001, 0), 99, 16)],
)
def test_both_header_variants_are_read_and_written(tmp_path, version, seen, header_bytes):
    """seen is a uint64 from version 0.2 (major, minor < 1000), an int32 before."""
    from d2imbalance.modeling import DarknetConv, read_darknet_header, read_darknet_weights, save_darknet_weights

    floats = np.arange(10, dtype=np.float32) / 4
    path = _write(tmp_path / "v.weights", floats, version=version, seen=seen)
    assert path.stat().st_size == header_bytes + 40
    header, values = read_darknet_weights(path)
    assert (header.major, header.minor, header.revision, header.seen) == (*version, seen)
    assert header.seen_is_64bit == (header_bytes == 20)
    assert values.dtype == np.float32 and np.array_equal(values, floats)
    assert read_darknet_header(path) == header

    layer = DarknetConv(1, 2, 1)
    save_darknet_weights([layer], tmp_path / "w.weights", seen=seen, version=version)
    assert (tmp_path / "w.weights").stat().st_size == header_bytes + 40
    assert read_darknet_header(tmp_path / "w.weights") == header


def test_bad_files_are_refused_with_the_reason(tmp_path):
    from d2imbalance.modeling import DarknetConv, read_darknet_weights, save_darknet_weights

    (tmp_path / "short.weights").write_bytes(struct.pack("<iii", 0, 2, 0) + b"\0\0")
    with pytest.raises(ValueError, match=r"short.weights: 14 bytes, shorter than a Darknet .weights header"):
        read_darknet_weights(tmp_path / "short.weights")
    (tmp_path / "odd.weights").write_bytes(struct.pack("<iiiQ", 0, 2, 0, 0) + b"\0" * 6)
    with pytest.raises(ValueError, match=r"odd.weights: the 6 bytes after its 20-byte header .* not whole float32"):
        read_darknet_weights(tmp_path / "odd.weights")
    with pytest.raises(ValueError, match=r"seen=4294967296 does not fit the int32 of version 0.1"):
        save_darknet_weights([DarknetConv(1, 2, 1)], tmp_path / "x.weights", seen=2**32, version=(0, 1, 0))


def test_layers_darknet_cannot_store_are_refused(tmp_path):
    from d2imbalance.modeling import load_darknet_weights

    path = _write(tmp_path / "x.weights", np.zeros(8))
    with pytest.raises(TypeError, match=r"layer 1 is a Linear: Darknet layers must be DarknetConv"):
        load_darknet_weights([nn.Conv2d(1, 2, 1), nn.Linear(2, 2)], path)
    with pytest.raises(TypeError, match=r"layer 0 \(Conv2d weight \(2, 1, 1, 1\)\) has neither a bias nor"):
        load_darknet_weights([nn.Conv2d(1, 2, 1, bias=False)], path)


def test_round_trip_restores_every_tensor_and_the_output(tmp_path):
    from d2imbalance.modeling import load_darknet_weights, read_darknet_header, save_darknet_weights

    source = _random_darknet53(seed=0)
    path = tmp_path / "darknet53.weights"
    save_darknet_weights(source.darknet_layers(), path, seen=32_013_312)
    layers = source.darknet_layers()
    assert len(layers) == 52
    assert path.stat().st_size == 20 + 4 * sum(_floats(layer) for layer in layers)
    assert read_darknet_header(path).seen == 32_013_312

    target = _random_darknet53(seed=1)
    before = _tensors(target)
    assert load_darknet_weights(target.darknet_layers(), path) == 52
    expected, loaded = _tensors(source), _tensors(target)
    assert expected.keys() == loaded.keys()
    for name, value in expected.items():
        assert not torch.equal(before[name], value), name  # the test would see a layer left unloaded
        assert torch.equal(loaded[name], value), name
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out_source, out_target = source(x), target(x)
    assert out_source.keys() == {"dark3", "dark4", "dark5"}
    for name in out_source:
        assert torch.equal(out_source[name], out_target[name]), name


def test_loading_casts_to_the_modules_dtype(tmp_path):
    from d2imbalance.modeling import load_darknet_weights, save_darknet_weights

    source = _random_darknet53(seed=0)
    path = tmp_path / "darknet53.weights"
    save_darknet_weights(source.darknet_layers(), path)
    target = _random_darknet53(seed=1).double()
    assert load_darknet_weights(target.darknet_layers(), path) == 52
    loaded_tensors = _tensors(target)
    for name, value in _tensors(source).items():
        loaded = loaded_tensors[name]
        assert loaded.dtype == torch.float64 and torch.equal(loaded, value.double()), name


def test_a_partial_file_fills_the_first_layers_and_leaves_the_rest(tmp_path):
    """As darknet53.conv.74 fills the backbone of a YOLOv3 and leaves its neck and head."""
    from d2imbalance.modeling import load_darknet_weights, save_darknet_weights

    source, k = _random_darknet53(seed=0).darknet_layers(), 20
    save_darknet_weights(source[:k], tmp_path / "partial.weights")
    target = _random_darknet53(seed=1).darknet_layers()
    untouched = [_tensors(layer) for layer in target]
    assert load_darknet_weights(target, tmp_path / "partial.weights") == k
    for index, (src, dst) in enumerate(zip(source, target)):
        written = _tensors(src)
        reference = written if index < k else untouched[index]
        assert not any(torch.equal(value, written[name]) for name, value in untouched[index].items())
        for name, value in _tensors(dst).items():
            assert torch.equal(value, reference[name]), (index, name)

    save_darknet_weights([], tmp_path / "empty.weights")  # a header only: nothing to fill
    assert load_darknet_weights(target, tmp_path / "empty.weights") == 0


def test_a_file_ending_inside_a_layer_names_it_and_changes_nothing(tmp_path):
    from d2imbalance.modeling import load_darknet_weights, read_darknet_weights, save_darknet_weights

    source = _random_darknet53(seed=0).darknet_layers()
    save_darknet_weights(source[:6], tmp_path / "six.weights")
    _, values = read_darknet_weights(tmp_path / "six.weights")
    before = sum(_floats(layer) for layer in source[:5])
    need = _floats(source[5])
    _write(tmp_path / "cut.weights", values[: before + need - 3])
    target = _random_darknet53(seed=1)
    original = _tensors(target)
    shape = re.escape(str(tuple(source[5].conv.weight.shape)))
    message = (
        rf"cut.weights ends inside layer 5 \(Conv2d weight {shape} \+ BatchNorm\): {need - 3} floats are left "
        rf"and that layer needs {need}"
    )
    with pytest.raises(ValueError, match=message):
        load_darknet_weights(target.darknet_layers(), tmp_path / "cut.weights")
    for name, value in _tensors(target).items():
        assert torch.equal(value, original[name]), name


def test_a_file_of_a_larger_network_is_refused(tmp_path):
    """A full Darknet-53 file into the layers up to dark3 (as a yolov3.weights into a Darknet53)."""
    from d2imbalance.modeling import load_darknet_weights, save_darknet_weights

    full = _random_darknet53(seed=0).darknet_layers()
    save_darknet_weights(full, tmp_path / "full.weights")
    small = _random_darknet53(seed=1, out_features=("dark3",))
    layers = small.darknet_layers()
    extra = sum(_floats(layer) for layer in full[len(layers) :])
    original = _tensors(small)
    with pytest.raises(
        ValueError,
        match=rf"full.weights has {extra} floats left over after all {len(layers)} layers" r".*for a larger network",
    ):
        load_darknet_weights(layers, tmp_path / "full.weights")
    for name, value in _tensors(small).items():
        assert torch.equal(value, original[name]), name


def test_full_width_darknet53_takes_exactly_darknet53_conv_74(tmp_path):
    """pjreddie's darknet53.conv.74 is 162,482,580 bytes: a 20-byte header and 40,620,640 floats, what the
    52 convolutions of Darknet53() take (built on the meta device: no memory)."""
    from d2imbalance.modeling import Darknet53

    with torch.device("meta"):
        layers = Darknet53().darknet_layers()
    assert len(layers) == 52
    assert 20 + 4 * sum(_floats(layer) for layer in layers) == 162_482_580


def test_darknet53_prefix_converts_once_and_caches_by_file(tmp_path, monkeypatch):
    """train.init_checkpoint = "darknet53://<file>": a detectron2 checkpoint of backbone.* tensors, cached
    until the file changes; the command line writes the same; a file that is not a whole Darknet-53 is
    refused."""
    import os

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils.file_io import PathManager

    from d2imbalance.modeling import Darknet53, darknet_weights, save_darknet_weights

    monkeypatch.setattr(darknet_weights, "_WIDTH_RATIO", WIDTH)
    monkeypatch.setenv("D2IMBALANCE_CACHE", str(tmp_path / "cache"))
    source = _random_darknet53(seed=0)
    weights = tmp_path / "darknet53.conv.74"
    save_darknet_weights(source.darknet_layers(), weights)

    local = PathManager.get_local_path("darknet53://" + str(weights))
    assert os.path.dirname(local) == str(tmp_path / "cache")
    checkpoint = torch.load(local, map_location="cpu")
    assert checkpoint["__author__"].startswith("Darknet-53 from")
    assert all(key.startswith("backbone.") for key in checkpoint["model"])
    backbone = Darknet53(width_ratio=WIDTH)
    backbone.load_state_dict({k[len("backbone.") :]: v for k, v in checkpoint["model"].items()})
    loaded = _tensors(backbone)
    for name, value in _tensors(source).items():
        assert torch.equal(loaded[name], value), name

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the file did not change")

    with monkeypatch.context() as patch:
        patch.setattr(darknet_weights, "convert_darknet53_weights", no_conversion)
        assert PathManager.get_local_path("darknet53://" + str(weights)) == local

    model = nn.Module()
    model.backbone = _random_darknet53(seed=2)
    DetectionCheckpointer(model).load("darknet53://" + str(weights))
    assert torch.equal(model.backbone.dark5[-1].expand.norm.running_var, source.dark5[-1].expand.norm.running_var)

    changed = _random_darknet53(seed=3)
    save_darknet_weights(changed.darknet_layers(), weights)
    stat = os.stat(weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # whatever the clock's resolution
    relocal = PathManager.get_local_path("darknet53://" + str(weights))
    assert relocal != local
    state = torch.load(relocal, map_location="cpu")["model"]
    assert torch.equal(state["backbone.stem.0.weight"], changed.stem.conv.weight)

    darknet_weights.main([str(weights), str(tmp_path / "out.pth")])
    cli = torch.load(tmp_path / "out.pth", map_location="cpu")["model"]
    assert cli.keys() == state.keys() and all(torch.equal(cli[k], state[k]) for k in state)

    save_darknet_weights(changed.darknet_layers()[:10], tmp_path / "ten.weights")
    with pytest.raises(ValueError, match=r"ten.weights fills only 10 of Darknet-53's 52 convolutions"):
        PathManager.get_local_path("darknet53://" + str(tmp_path / "ten.weights"))
    with pytest.raises(FileNotFoundError, match="no file"):
        PathManager.get_local_path("darknet53://" + str(tmp_path / "missing.weights"))
