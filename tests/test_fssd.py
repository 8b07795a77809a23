"""FSSD (d2imbalance.modeling.fssd): the feature fusion module, FSSDVGG's maps, SSD's default boxes on
them, FSSD-SCB's `const` form against vanilla FSSD, the torchvision warm start, and every FSSD config
(the shapes ones train a step and evaluate).
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from test_ssd import _tiny_ssd, shapes_step_and_test

pytestmark = pytest.mark.detectron2

ROOT = os.path.join(os.path.dirname(__file__), "..")
MAPS = {300: [38, 19, 10, 5, 3, 1], 512: [64, 32, 16, 8, 4, 2, 1]}
CHANNELS = {300: [512, 512, 256, 256, 256, 256], 512: [512, 512, 256, 256, 256, 256, 256]}
STRIDES = {300: [8, 16, 32, 64, 100, 300], 512: [8, 16, 32, 64, 128, 256, 512]}


def _tiny_fssd(num_classes=3, input_size=300, cls=None, **kwargs):
    """FSSD300 (or 512) on a 1/16-width FSSDVGG with the SSD VOC recipe's default boxes (test_ssd's
    _tiny_ssd with the FSSD backbone)."""
    from d2imbalance.modeling import FSSDVGG

    return _tiny_ssd(num_classes, input_size, cls, backbone_cls=FSSDVGG, **kwargs)


# ----------------------------------------------------------------------------- fusion module
def test_fusion_projects_resizes_to_the_first_map_concatenates_and_normalises():
    """Sources 38x38x8, 19x19x16, 9x9x4 -> 3 x 4 channels at 38x38. Without norm each block is ReLU(1x1
    conv) resized bilinearly with corners aligned (the corners keep the source's values); with BN (train
    mode) every channel has mean 0 and variance 1."""
    from d2imbalance.modeling import FeatureFusion

    torch.manual_seed(0)
    xs = [torch.randn(2, 8, 38, 38), torch.randn(2, 16, 19, 19), torch.randn(2, 4, 9, 9)]
    plain = FeatureFusion([8, 16, 4], channels=4, norm="")
    assert plain.out_channels == 12
    out = plain(xs)
    assert out.shape == (2, 12, 38, 38)
    projected = [F.relu(F.conv2d(x, layer.weight, layer.bias)) for layer, x in zip(plain.reduce, xs)]
    assert torch.allclose(out[:, :4], projected[0], atol=1e-6)  # the largest map is not resized
    for block, source in ((out[:, 4:8], projected[1]), (out[:, 8:], projected[2])):
        assert torch.allclose(block, F.interpolate(source, size=(38, 38), mode="bilinear", align_corners=True))
        for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            assert torch.allclose(block[..., i, j], source[..., i, j], atol=1e-6)
    assert (out >= 0).all()
    assert all(layer.bias is not None and layer.norm is None for layer in plain.reduce)

    bn = FeatureFusion([8, 16, 4], channels=4)  # the paper's BatchNorm on the 768 (here 12) channels
    assert isinstance(bn.norm, torch.nn.BatchNorm2d) and bn.norm.num_features == 12
    normed = bn.train()(xs)
    assert torch.allclose(normed.mean(dim=(0, 2, 3)), torch.zeros(12), atol=1e-5)
    assert torch.allclose(normed.var(dim=(0, 2, 3), unbiased=False), torch.ones(12), atol=1e-3)
    half = FeatureFusion([8, 16, 4], channels=4, norm="", align_corners=False)(xs)
    assert half.shape == (2, 12, 38, 38)


# ----------------------------------------------------------------------------- backbone
@pytest.mark.parametrize("input_size", [300, 512])
def test_backbone_maps_channels_strides_and_the_fused_sources(input_size):
    """Width 1: pyramid channels 512, 512, 256 ... and SSD's prior steps as strides; the tiny network's maps
    are 38 ... 1 (64 ... 1). The fusion takes conv4_3 as it is (no L2Norm: FSSD drops it), fc7 and
    conv7_2 of FSSD's extras (fc7 19 -> conv6_2 17 -> conv7_2 9 at 300; 32 -> 30 -> 15 at 512)."""
    from d2imbalance.modeling import FSSDVGG

    full = FSSDVGG(input_size=input_size).output_shape()
    assert [s.channels for s in full.values()] == CHANNELS[input_size]
    assert [s.stride for s in full.values()] == STRIDES[input_size]
    assert list(full) == [f"fssd{i}" for i in range(1, len(MAPS[input_size]) + 1)]

    torch.manual_seed(0)
    backbone = FSSDVGG(input_size=input_size, width_ratio=1 / 16)
    assert backbone.conv4_3_norm is None and not any(k.startswith("conv4_3_norm") for k in backbone.state_dict())
    assert not hasattr(backbone, "conv8_1") and backbone.padding_constraints == {"square_size": input_size}
    assert backbone.fusion.out_channels == 3 * 16 and isinstance(backbone.fusion.norm, torch.nn.BatchNorm2d)
    captured = {}
    backbone.conv4_3.register_forward_hook(lambda m, i, o: captured.update(conv4_3=o))
    backbone.conv7_2.register_forward_hook(lambda m, i, o: captured.update(conv7_2=o))
    backbone.fusion.register_forward_hook(lambda m, i, o: captured.update(sources=i[0], fused=o))
    out = backbone(torch.rand(2, 3, input_size, input_size))
    assert [f.shape[-2:] for f in out.values()] == [(m, m) for m in MAPS[input_size]]
    assert [f.shape[1] for f in out.values()] == [s.channels for s in backbone.output_shape().values()]
    assert captured["sources"][0] is captured["conv4_3"] and captured["sources"][2] is captured["conv7_2"]
    conv7 = {300: 9, 512: 15}[input_size]
    assert captured["conv7_2"].shape[-1] == conv7 and captured["fused"].shape[-1] == MAPS[input_size][0]
    assert all((f >= 0).all() for f in out.values())  # every pyramid convolution ends in a ReLU
    sum(f.sum() for f in out.values()).backward()  # no unused parameter (DDP's default refuses them)
    assert all(p.grad is not None for p in backbone.parameters())


def test_ssdvgg_without_l2norm_outputs_conv4_3_as_is_and_keeps_ssds_extras():
    """The two hooks FSSDVGG uses leave SSDVGG as it was: by default the L2Norm and SSD's conv6 ... conv9."""
    from d2imbalance.modeling import SSDVGG

    torch.manual_seed(0)
    plain = SSDVGG(width_ratio=1 / 16, l2norm_scale=None)
    assert plain.conv4_3_norm is None
    captured = {}
    plain.conv4_3.register_forward_hook(lambda m, i, o: captured.update(conv4_3=o))
    out = plain(torch.rand(1, 3, 300, 300))
    assert out["conv4_3"] is captured["conv4_3"]
    default = SSDVGG(width_ratio=1 / 16)
    assert default.conv4_3_norm is not None and list(default.output_shape()) == [
        "conv4_3", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"
    ]  # fmt: skip
    assert default.conv6_2.stride == (2, 2) and default.conv9_2.kernel_size == (3, 3)


# ----------------------------------------------------------------------------- default boxes, losses
@pytest.mark.parametrize(
    "input_size, total",
    [
        # SSD's boxes: 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4 = 5776 + 2166 + 600 + 150 + 36 + 4
        (300, 8732),
        # 64^2*4 + 32^2*6 + 16^2*6 + 8^2*6 + 4^2*6 + 2^2*4 + 1*4 = 16384 + 6144 + 1536 + 384 + 96 + 16 + 4
        (512, 24564),
    ],
)
def test_prior_counts_are_ssds(input_size, total):
    model = _tiny_fssd(input_size=input_size)
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, input_size, input_size))
    anchors = model.anchor_generator(list(features.values()))
    assert [len(a) for a in anchors] == [m * m * n for m, n in zip(MAPS[input_size], model.head.num_anchors)]
    assert sum(len(a) for a in anchors) == total


def test_train_step_and_inference_run_and_fssd_scb_const_is_vanilla_fssd_exactly():
    """Same seeded weights and batch: FSSD-SCB with W = 1 computes FSSD's losses bit for bit and mines
    the same negatives; the paper's weights change the classification loss only. Inference runs."""
    from scale_balanced import SSDSCB
    from test_ssd_scb import _batch, _train_step

    vanilla, vanilla_scalars, *_ = _train_step(_tiny_fssd(), _batch())
    assert all(v.item() > 0 and math.isfinite(v.item()) for v in vanilla.values())
    const, const_scalars, *_ = _train_step(_tiny_fssd(cls=SSDSCB, weighting_form="const"), _batch())
    for k in vanilla:
        assert torch.equal(vanilla[k], const[k]), k
    assert const_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]
    paper, paper_scalars, *_ = _train_step(_tiny_fssd(cls=SSDSCB), _batch())
    assert paper["loss_cls"].item() != pytest.approx(vanilla["loss_cls"].item(), rel=1e-4)
    assert torch.equal(paper["loss_box_reg"], vanilla["loss_box_reg"])
    assert paper_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]

    model = _tiny_fssd().eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 250, 200) * 255, "height": 500, "width": 400}])[0]["instances"]
    assert out.image_size == (500, 400) and len(out) <= 200 and (out.scores > 0.01).all()


# ----------------------------------------------------------------------------- warm start
def test_torchvision_vgg16_warm_starts_the_vgg_part(tmp_path, monkeypatch):
    """The torchvision-vgg16:// checkpoint (a random VGG16 here, no download) fills FSSDVGG's conv1_1 ...
    fc7 (SSDVGG's names); only FSSD's own layers (conv6/conv7, fusion, pyramid) are left to their init."""
    import torchvision
    from detectron2.checkpoint import DetectionCheckpointer

    from d2imbalance.modeling import FSSDVGG, convert_torchvision_vgg16, vgg

    torch.manual_seed(0)
    state = torchvision.models.vgg16().state_dict()
    converted = convert_torchvision_vgg16(state)
    result = FSSDVGG().load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith(("conv6", "conv7", "fusion.", "fssd")) for k in result.missing_keys)

    monkeypatch.setattr(vgg, "_torchvision_vgg16_state_dict", lambda name: state)
    monkeypatch.setenv("D2IMBALANCE_CACHE", str(tmp_path / "cache"))
    model = _tiny_fssd(num_classes=20)
    model.backbone = FSSDVGG()
    DetectionCheckpointer(model).load("torchvision-vgg16://IMAGENET1K_V1")
    assert torch.equal(model.backbone.conv1_1.weight, state["features.0.weight"])
    assert torch.equal(model.backbone.conv4_3.weight, state["features.21.weight"])
    assert torch.equal(model.backbone.fc7.bias, state["classifier.3.bias"][::4])


# ----------------------------------------------------------------------------- configs
BASELINES = {  # FSSD config: (its SSD baseline, num_classes, input size)
    "fssd300_voc0712": ("ssd300_voc0712", 20, 300),
    "fssd300_coco": ("ssd300_coco", 80, 300),
    "fssd512_coco": ("ssd512_coco", 80, 512),
    "fssd300_shapes": ("ssd300_shapes", 4, 300),
}
SCB_CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "ScaleBalanced")) if f.startswith("fssd"))
PAPER = dict(weighting_form="scale_balanced", scb_alpha=1.0, scb_beta=3.0, weight_box_loss=False)


def test_every_fssd_scb_config_is_listed():
    assert SCB_CONFIGS == ["fssd300_scb_coco", "fssd300_scb_shapes", "fssd300_scb_voc0712", "fssd512_scb_coco"]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_fssd_configs_are_their_ssd_baseline_with_the_fssd_backbone(name):
    """Only the backbone and the head's channels differ from the SSD baseline: default boxes, recipe,
    data and evaluation are SSD's. The model instantiates with the pyramid's channels."""
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.modeling import SSD, FSSDVGG

    ssd_name, num_classes, size = BASELINES[name]
    cfg, ssd = get_config(f"Baselines/{name}.py"), get_config(f"Baselines/{ssd_name}.py")
    width = 0.125 if "shapes" in name else 1.0
    assert cfg.model.backbone._target_ is FSSDVGG
    assert (cfg.model.backbone.input_size, cfg.model.backbone.width_ratio) == (size, width)
    assert cfg.model.backbone.norm == ("BN" if "shapes" in name else "")
    assert [s.channels for s in cfg.model.head.input_shape] == [int(c * width) for c in CHANNELS[size]]
    for key in cfg.model:
        if key not in ("backbone", "head"):
            assert cfg.model[key] == ssd.model[key], key
    assert cfg.model.num_classes == num_classes and cfg.model.head.num_anchors == ssd.model.head.num_anchors
    assert cfg.optimizer == ssd.optimizer and cfg.lr_multiplier == ssd.lr_multiplier
    assert cfg.dataloader == ssd.dataloader
    train, ssd_train = dict(cfg.train), dict(ssd.train)
    assert train.pop("output_dir") == f"./output/{name}" and ssd_train.pop("output_dir") != f"./output/{name}"
    assert train == ssd_train
    model = instantiate(cfg.model)
    assert type(model) is SSD and isinstance(model.backbone, FSSDVGG)
    assert model.head_in_features == [f"fssd{i}" for i in range(1, len(MAPS[size]) + 1)]


@pytest.mark.parametrize("name", SCB_CONFIGS)
def test_fssd_scb_configs_set_the_paper_settings_on_the_fssd_baseline(name):
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from scale_balanced import SSDSCB

    cfg = get_config(f"ScaleBalanced/{name}.py")
    baseline = get_config(f"Baselines/{name.replace('_scb', '')}.py")
    assert cfg.model._target_ is SSDSCB
    assert {k: cfg.model[k] for k in PAPER} == PAPER
    for key in baseline.model:
        if key != "_target_":
            assert cfg.model[key] == baseline.model[key], key
    assert cfg.optimizer == baseline.optimizer and cfg.dataloader == baseline.dataloader
    assert cfg.train.max_iter == baseline.train.max_iter and cfg.train.output_dir == f"./output/{name}"
    assert len(cfg.dataloader.evaluator) == 2  # the baseline's metric and the paper's recall by size
    model = instantiate(cfg.model)
    assert type(model) is SSDSCB and model.weighting_form == "scale_balanced"


@pytest.mark.parametrize("name", ["Baselines/fssd300_shapes", "ScaleBalanced/fssd300_scb_shapes"])
def test_fssd_shapes_configs_train_a_step_and_evaluate(name, tmp_path):
    """The train_net path on the mini shapes dataset: one SimpleTrainer step (batch 2), then do_test with
    COCO AP and the paper's recall by size."""
    latest, results = shapes_step_and_test(f"{name}.py", tmp_path)
    assert math.isfinite(latest["total_loss"]) and latest["num_pos_anchors"] >= 1
    assert latest["num_mined_negatives"] == pytest.approx(3 * latest["num_pos_anchors"])
    if "scb" in name:
        assert latest["scb/mean_pos_anchor_weight"] > 0
    assert set(results["bbox"]) >= {"AP", "AP50", "APs", "APm", "APl"}
    assert {"recall_small@0.3", "recall_large@0.01"} <= set(results["recall_by_size"])
