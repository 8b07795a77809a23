"""DSSD (d2imbalance.modeling.dssd): DSSDResNet's maps for 321 and 513, the deconvolution and prediction
modules on hand-set weights, DSSD's default boxes, DSSD-SCB's `const` form against vanilla DSSD, the
R-101 parameter names, and every DSSD config (the shapes ones train a step and evaluate).
"""
import math
import os

import pytest
import torch

from d2imbalance.modeling.ssd_ops import ssd_prior_sizes
from test_ssd import shapes_step_and_test

pytestmark = pytest.mark.detectron2

ROOT = os.path.join(os.path.dirname(__file__), "..")
# Table 1 of the paper (321); 513: 128 after the stem, then /2 (conv3_x), /2 (conv4_x), dilated conv5_x.
MAPS = {321: [40, 20, 10, 5, 3, 1], 513: [64, 32, 16, 8, 4, 2, 1]}
NAMES = {
    321: ["deconv3", "deconv5", "deconv6", "deconv7", "deconv8", "res9"],
    513: ["deconv3", "deconv5", "deconv6", "deconv7", "deconv8", "deconv9", "res10"],
}
STRIDES = {321: [8, 16, 32, 64, 107, 321], 513: [8, 16, 32, 64, 128, 256, 513]}
RATIOS = [1.6, 2.0, 3.0]


def _tiny_dssd(num_classes=3, input_size=321, cls=None, **kwargs):
    """DSSD on a 1/16-width ResNet-50 (BatchNorm, nothing frozen) with DSSD's boxes (the VOC script's
    sizes); ``cls``: an SSD subclass to build instead (same seeded weights)."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import SSD, DSSDHead, DSSDResNet, SSDAnchorGenerator

    torch.manual_seed(0)
    backbone = DSSDResNet(input_size=input_size, depth=50, width_ratio=1 / 16, norm="BN", freeze_at=0)
    shapes = list(backbone.output_shape().values())
    sizes = ssd_prior_sizes(input_size, len(shapes), 20, 95, (10, 20))
    anchors = SSDAnchorGenerator(
        min_sizes=sizes[0], max_sizes=sizes[1], aspect_ratios=[RATIOS] * len(shapes), strides=[s.stride for s in shapes]
    )
    head = DSSDHead(
        input_shape=[ShapeSpec(channels=s.channels) for s in shapes], num_classes=num_classes,
        num_anchors=[8] * len(shapes), prediction_channels=(16, 64),
    )  # fmt: skip
    return (cls or SSD)(
        backbone=backbone, head=head, anchor_generator=anchors, num_classes=num_classes,
        pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0], **kwargs,
    )  # fmt: skip


# ----------------------------------------------------------------------------- backbone
@pytest.mark.parametrize("input_size", [321, 513])
def test_backbone_maps_channels_strides_and_the_encoder(input_size):
    """Width 1: decoder maps of 512 channels and the top encoder map of 1024, strides = the prior steps.
    The tiny network's encoder: conv3_x 40 (64), conv5_x 20 (32) at stride 16 with dilation 2, the extra
    blocks 10, 5, 3, 1 (16, 8, 4, 2, 1); its decoder maps have the encoder's sizes."""
    from d2imbalance.modeling import DSSDResNet

    full = DSSDResNet(input_size=input_size)
    shapes = full.output_shape()
    assert list(shapes) == NAMES[input_size]
    assert [s.channels for s in shapes.values()] == [512] * (len(MAPS[input_size]) - 1) + [1024]
    assert [s.stride for s in shapes.values()] == STRIDES[input_size]
    assert len(full.res4) == 23 and full.padding_constraints == {"square_size": input_size}
    assert full.res5[0].conv2.dilation == (2, 2) and full.res5[0].stride == 1 and full.res3[0].conv1.stride == (2, 2)
    assert not any(p.requires_grad for p in [*full.stem.parameters(), *full.res2.parameters()])  # freeze_at=2
    assert all(p.requires_grad for p in full.res3.parameters())

    torch.manual_seed(0)
    tiny = DSSDResNet(input_size=input_size, depth=50, width_ratio=1 / 16, norm="BN", freeze_at=0)
    encoder = {}
    for name in ["stem", "res3", "res5"] + [f"res{i}" for i in range(6, 5 + len(MAPS[input_size]) - 1)]:
        getattr(tiny, name).register_forward_hook(lambda m, i, o, name=name: encoder.update({name: o.shape[-1]}))
    out = tiny(torch.rand(2, 3, input_size, input_size))
    assert encoder["stem"] == {321: 80, 513: 128}[input_size]  # Caffe's pool: ceil((161 - 3) / 2) + 1 = 80
    assert [encoder[n] for n in list(encoder)[1:]] == MAPS[input_size]
    assert [tuple(f.shape[-2:]) for f in out.values()] == [(m, m) for m in MAPS[input_size]]
    assert [f.shape[1] for f in out.values()] == [s.channels for s in tiny.output_shape().values()]
    assert all((f >= 0).all() for f in out.values())  # each decoder map ends in a ReLU, as each extra block
    sum(f.sum() for f in out.values()).backward()  # no unused parameter (DDP's default refuses them)
    assert all(p.grad is not None for p in tiny.parameters())


def test_extra_blocks_and_deconvolutions_have_the_scripts_geometry():
    """321: extra blocks 2x2/2, 2x2/2, 3x3/1, 3x3/1 (20 -> 10 -> 5 -> 3 -> 1); deconvolutions 3x3/1 (1 -> 3,
    3 -> 5), then 2x2/2. 513: all 2x2/2 (the first, 1 -> 2, is the script's 2x2/1: the same map from one
    pixel)."""
    from d2imbalance.modeling import DSSDResNet

    small = DSSDResNet(input_size=321, depth=50, width_ratio=1 / 32, norm="BN", freeze_at=0)
    blocks = [getattr(small, f"res{i}") for i in range(6, 10)]
    assert [(b.conv1.kernel_size[0], b.conv1.stride[0]) for b in blocks] == [(2, 2), (2, 2), (3, 1), (3, 1)]
    assert all(b.shortcut.kernel_size == b.conv1.kernel_size and b.shortcut.stride == b.conv1.stride for b in blocks)
    assert small.res9.conv1.norm is None and small.res9.conv1.bias is not None  # no norm by default, as SSD's
    assert type(small.deconv8.skip_conv1.norm).__name__ == "BatchNorm2d"  # the decoder's BN (Fig. 3)

    def geometry(module):
        return module.deconv.kernel_size[0], module.deconv.stride[0]

    deconvs = {n: geometry(getattr(small, n)) for n in NAMES[321][:-1]}
    assert deconvs == {"deconv8": (3, 1), "deconv7": (3, 1), "deconv6": (2, 2), "deconv5": (2, 2), "deconv3": (2, 2)}
    large = DSSDResNet(input_size=513, depth=50, width_ratio=1 / 32, norm="BN", freeze_at=0)
    assert all(geometry(getattr(large, n)) == (2, 2) for n in NAMES[513][:-1])


def test_deconv_geometry_and_refused_sizes():
    from d2imbalance.modeling import DSSDResNet, deconv_geometry

    assert [deconv_geometry(a, b) for a, b in [(1, 3), (3, 5), (5, 10), (20, 40), (1, 2)]] == [
        (3, 1), (3, 1), (2, 2), (2, 2), (2, 2)
    ]  # fmt: skip
    for a, b in [(3, 7), (5, 5), (4, 3)]:
        with pytest.raises(ValueError, match=f"{a}x{a} map to {b}x{b}"):
            deconv_geometry(a, b)
    with pytest.raises(ValueError, match="input_size=300.*321 or 513"):
        DSSDResNet(input_size=300)
    with pytest.raises(ValueError, match="depth=34.*50, 101 or 152"):
        DSSDResNet(depth=34)


# ----------------------------------------------------------------------------- modules by hand
def _set(conv, weight, bias=0.0):
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).reshape(conv.weight.shape))
        conv.bias.fill_(bias)


def test_deconvolution_module_by_hand():
    """One channel, no norm: deconvolution 2x2/2 of ones (each deep value fills a 2x2 block), identity 3x3
    convolution (+1), skip path relu(s) then x2 (-1): out = relu((d + 1) * (2 relu(s) - 1))."""
    from d2imbalance.modeling import DeconvolutionModule

    module = DeconvolutionModule(1, 1, channels=1, kernel=2, stride=2, norm="")
    identity = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    _set(module.deconv, [[1, 1], [1, 1]])
    _set(module.deconv_conv, identity, 1.0)
    _set(module.skip_conv1, identity)
    _set(module.skip_conv2, [[0, 0, 0], [0, 2, 0], [0, 0, 0]], -1.0)
    deep = torch.tensor([[1.0, -2.0], [3.0, 0.5]]).view(1, 1, 2, 2)
    skip = torch.tensor([[1.0, 2.0, 0.0, 3.0], [-1.0, 0.5, 1.0, 1.0], [2.0, 2.0, 0.25, 1.0], [0.0, 1.0, 1.0, -4.0]])
    out = module(deep, skip.view(1, 1, 4, 4))[0, 0]
    expected = torch.tensor(
        [
            [2 * 1, 2 * 3, -1 * -1, -1 * 5],  # d = 1: (1 + 1) * (2 * 1 - 1) = 2; d = -2 with s = 0: (-1) * (-1) = 1
            [0, 0, 0, 0],  # s = -1: 2 * (-1) = -2 -> 0; s = 0.5: 2 * 0 = 0; d = -2 with s = 1: -1 * 1 -> 0
            [4 * 3, 4 * 3, 1.5 * -0.5, 1.5 * 1],  # d = 3: 4 * 3 = 12; d = 0.5: 1.5 * (-0.5) -> 0, 1.5 * 1 = 1.5
            [0, 4 * 1, 1.5 * 1, 0],  # s = 0: 4 * (-1) -> 0; s = -4: 1.5 * (-1) -> 0
        ]
    ).clamp(min=0)
    assert torch.allclose(out, expected), out
    assert out[2, 0] == 12 and out[0, 2] == 1  # products: sums would give 4 + 3 = 7 and -1 - 1 -> 0

    normed = DeconvolutionModule(8, 4, channels=6, kernel=3, stride=1)  # the paper's BN after each 3x3 conv
    norms = [type(m.norm).__name__ for m in (normed.deconv_conv, normed.skip_conv1, normed.skip_conv2)]
    assert norms == ["BatchNorm2d"] * 3 and normed.deconv_conv.bias is None
    assert normed(torch.rand(2, 8, 1, 1), torch.rand(2, 4, 3, 3)).shape == (2, 6, 3, 3)  # 1 -> 3, as 321's top
    mismatch = r"deconvolution gives \(4, 4\) but the encoder map is \(5, 5\).*deconv_geometry\(2, 5\)"
    with pytest.raises(ValueError, match=mismatch):
        normed(torch.rand(2, 8, 2, 2), torch.rand(2, 4, 5, 5))


def test_prediction_module_is_a_residual_sum_of_1x1_convolutions():
    """Two input channels (a, b); mid 1, out 1: main path relu(a) -> relu(2 .) -> 3 . + 1, shortcut b:
    out = 6 relu(a) + 1 + b."""
    from d2imbalance.modeling import PredictionModule

    module = PredictionModule(2, mid_channels=1, out_channels=1)
    assert [c.kernel_size for c in (module.conv1, module.conv2, module.conv3, module.shortcut)] == [(1, 1)] * 4
    _set(module.conv1, [1.0, 0.0])
    _set(module.conv2, [2.0])
    _set(module.conv3, [3.0], 1.0)
    _set(module.shortcut, [0.0, 1.0])
    a = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    b = torch.tensor([[1.0, 1.0], [-3.0, 0.25]])
    out = module(torch.stack([a, b]).unsqueeze(0))[0, 0]
    assert torch.allclose(out, torch.tensor([[14.0, 2.0], [1.0, 1.25]]))  # 6*2+1+1, 0+1+1, 3+1-3, 0+1+0.25

    full = PredictionModule(512)
    assert (full.conv1.out_channels, full.conv2.out_channels, full.conv3.out_channels) == (256, 256, 1024)
    assert full.shortcut.in_channels == 512 and full.shortcut.out_channels == 1024


def test_head_predicts_on_the_prediction_modules_and_ssd_checks_its_input_channels():
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import SSD, DSSDHead, DSSDResNet

    head = DSSDHead(input_shape=[ShapeSpec(channels=c) for c in (8, 8, 16)], num_classes=3, num_anchors=[8] * 3,
                    prediction_channels=(4, 12))  # fmt: skip
    assert head.in_channels == [8, 8, 16] and [c.in_channels for c in head.cls_score] == [12] * 3
    assert [m.conv1.in_channels for m in head.prediction] == [8, 8, 16]
    logits, deltas = head([torch.rand(2, 8, 5, 5), torch.rand(2, 8, 3, 3), torch.rand(2, 16, 1, 1)])
    assert [tuple(x.shape) for x in logits] == [(2, 32, 5, 5), (2, 32, 3, 3), (2, 32, 1, 1)]  # 8 x (3 + 1)
    assert [tuple(x.shape) for x in deltas] == [(2, 32, 5, 5), (2, 32, 3, 3), (2, 32, 1, 1)]  # 8 x 4

    model = _tiny_dssd()
    backbone = DSSDResNet(depth=50, width_ratio=1 / 16, norm="BN", freeze_at=0)
    wrong = DSSDHead(input_shape=[ShapeSpec(channels=64)] * 6, num_classes=3, num_anchors=[8] * 6)
    with pytest.raises(ValueError, match=r"head takes \[64, 64, 64, 64, 64, 64\] channels.*\[32, 32, 32, 32, 32, 64\]"):
        SSD(backbone=backbone, head=wrong, anchor_generator=model.anchor_generator, num_classes=3,
            pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3)  # fmt: skip


# ----------------------------------------------------------------------------- default boxes, losses
@pytest.mark.parametrize(
    "input_size, total",
    [
        (321, 17080),  # (40^2 + 20^2 + 10^2 + 5^2 + 3^2 + 1) * 8 = 2135 * 8
        (513, 43688),  # (64^2 + 32^2 + 16^2 + 8^2 + 4^2 + 2^2 + 1) * 8 = 5461 * 8
    ],
)
def test_prior_counts_and_the_boxes_of_a_cell(input_size, total):
    """8 boxes per location on every map: the squares s_k and sqrt(s_k s_k+1), then 1.6, 2, 3 and their
    inverses (w / h of each)."""
    model = _tiny_dssd(input_size=input_size).eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, input_size, input_size))
    anchors = model.anchor_generator(list(features.values()))
    assert [len(a) for a in anchors] == [m * m * 8 for m in MAPS[input_size]]
    assert sum(len(a) for a in anchors) == total
    cell = anchors[0].tensor[:8]  # the first location of the first map, centred at (4, 4)
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    assert torch.allclose((cell[:, 0] + cell[:, 2]) / 2, torch.full((8,), 4.0))
    assert torch.allclose(w / h, torch.tensor([1, 1, 1.6, 1 / 1.6, 2, 0.5, 3, 1 / 3]), rtol=1e-5)
    s0, s1 = 0.1 * input_size, 0.2 * input_size
    assert torch.allclose(w[:2], torch.tensor([s0, math.sqrt(s0 * s1)]), rtol=1e-5)


def test_train_step_and_inference_run_and_dssd_scb_const_is_vanilla_dssd_exactly():
    """Same seeded weights and batch: DSSD-SCB with W = 1 computes DSSD's losses bit for bit and mines
    the same negatives; the paper's weights change the classification loss only. Inference runs."""
    from scale_balanced import SSDSCB
    from test_ssd_scb import _batch, _train_step

    vanilla, vanilla_scalars, anchors, *_ = _train_step(_tiny_dssd(), _batch())
    assert len(anchors) == 17080
    assert all(v.item() > 0 and math.isfinite(v.item()) for v in vanilla.values())
    const, const_scalars, *_ = _train_step(_tiny_dssd(cls=SSDSCB, weighting_form="const"), _batch())
    for k in vanilla:
        assert torch.equal(vanilla[k], const[k]), k
    assert const_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]
    paper, paper_scalars, *_ = _train_step(_tiny_dssd(cls=SSDSCB), _batch())
    assert paper["loss_cls"].item() != pytest.approx(vanilla["loss_cls"].item(), rel=1e-4)
    assert torch.equal(paper["loss_box_reg"], vanilla["loss_box_reg"])
    assert paper_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]

    one, *_ = _train_step(_tiny_dssd(), _batch()[1:])  # one image per device: no norm on the 1x1 map
    assert all(math.isfinite(v.item()) for v in one.values())
    model = _tiny_dssd().eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 250, 200) * 255, "height": 500, "width": 400}])[0]["instances"]
    assert out.image_size == (500, 400) and len(out) <= 200 and (out.scores > 0.01).all()


# ----------------------------------------------------------------------------- warm start
def test_resnet_part_has_detectron2s_r101_names_and_shapes(tmp_path):
    """detectron2's own ResNet-101 (MSRA: stride in the 1x1, FrozenBN, res5 dilation 2), the backbone that
    loads R-101.pkl in its model zoo, fills DSSDResNet through DetectionCheckpointer: every ResNet tensor
    has its name and shape; only DSSD's own layers (res6 ..., the deconvolution modules) are left."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import build_resnet_backbone

    from d2imbalance.modeling import DSSDResNet

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 101
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    torch.manual_seed(1)
    reference = build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict()
    torch.save({"model": reference}, tmp_path / "r101.pth")

    backbone = DSSDResNet()
    own = backbone.state_dict()
    resnet_keys = {k for k in own if k.split(".")[0] in ("stem", "res2", "res3", "res4", "res5")}
    assert resnet_keys == set(reference) and all(own[k].shape == reference[k].shape for k in reference)
    DetectionCheckpointer(backbone).load(str(tmp_path / "r101.pth"))
    assert torch.equal(backbone.res4[22].conv3.weight, reference["res4.22.conv3.weight"])
    assert torch.equal(backbone.stem.conv1.norm.running_mean, reference["stem.conv1.norm.running_mean"])


# ----------------------------------------------------------------------------- configs
BASELINES = {  # DSSD config: (SSD baseline of its data and schedule, input size, num_classes, prior total)
    "dssd321_coco": ("ssd300_coco", 321, 80, 17080),
    "dssd513_coco": ("ssd512_coco", 513, 80, 43688),
    "dssd321_shapes": ("ssd300_shapes", 321, 4, 17080),
}
SCB_CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "ScaleBalanced")) if f.startswith("dssd"))
PAPER = dict(weighting_form="scale_balanced", scb_alpha=1.0, scb_beta=3.0, weight_box_loss=False)


def test_every_dssd_config_is_listed():
    baselines = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "Baselines")) if f.startswith("dssd"))
    assert baselines == sorted(BASELINES)
    assert SCB_CONFIGS == ["dssd321_scb_coco", "dssd321_scb_shapes", "dssd513_scb_coco"]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_dssd_configs_keep_their_ssd_baselines_data_and_schedule(name):
    """The SSD baseline's optimizer, schedule, data and evaluation, warped to the DSSD input size and read
    as BGR (the MSRA weights' format); the model builds with 8 boxes per location on its maps."""
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.modeling import SSD, DSSDHead, DSSDResNet

    ssd_name, size, num_classes, total = BASELINES[name]
    cfg, ssd = get_config(f"Baselines/{name}.py"), get_config(f"Baselines/{ssd_name}.py")
    assert cfg.model.backbone._target_ is DSSDResNet and cfg.model.head._target_ is DSSDHead
    assert cfg.model.num_classes == num_classes and cfg.model.input_format == "BGR"
    assert cfg.optimizer == ssd.optimizer and cfg.lr_multiplier == ssd.lr_multiplier
    assert cfg.train.lr_reference == ssd.train.lr_reference and cfg.train.max_iter == ssd.train.max_iter
    assert cfg.dataloader.train.total_batch_size == ssd.dataloader.train.total_batch_size
    assert cfg.dataloader.train.dataset == ssd.dataloader.train.dataset
    assert cfg.dataloader.test.dataset == ssd.dataloader.test.dataset
    assert cfg.dataloader.evaluator == ssd.dataloader.evaluator
    for mapper, resize in ((cfg.dataloader.train.mapper, 3), (cfg.dataloader.test.mapper, 0)):
        assert mapper.augmentations[resize].shape == (size, size) and mapper.image_format == "BGR"
    assert cfg.train.output_dir == f"./output/{name}"
    resnet = cfg.model.backbone
    if "coco" in name:
        assert cfg.train.init_checkpoint == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
        assert (resnet.depth, resnet.width_ratio, resnet.norm, resnet.freeze_at) == (101, 1.0, "FrozenBN", 2)
    else:
        assert cfg.train.init_checkpoint == ""
        assert (resnet.depth, resnet.width_ratio, resnet.norm, resnet.freeze_at) == (50, 0.125, "BN", 0)

    model = instantiate(cfg.model)
    assert type(model) is SSD and model.head_in_features == NAMES[size]
    assert model.head.num_anchors == [8] * len(MAPS[size])
    assert model.anchor_generator.strides == STRIDES[size]
    assert sum(m * m * a for m, a in zip(MAPS[size], model.head.num_anchors)) == total
    first = {321: (0.07 if "coco" in name else 0.1), 513: 0.04}[size] * size  # the first map's s_k
    assert list(model.anchor_generator.cell_anchors)[0][0, 2].item() * 2 == pytest.approx(first)


@pytest.mark.parametrize("name", SCB_CONFIGS)
def test_dssd_scb_configs_set_the_paper_settings_on_the_dssd_baseline(name):
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
    if "shapes" in name:
        model = instantiate(cfg.model)
        assert type(model) is SSDSCB and model.weighting_form == "scale_balanced"


@pytest.mark.parametrize("name", ["Baselines/dssd321_shapes", "ScaleBalanced/dssd321_scb_shapes"])
def test_dssd_shapes_configs_train_a_step_and_evaluate(name, tmp_path):
    """The train_net path on the mini shapes dataset: one SimpleTrainer step (batch 2), then do_test with
    COCO AP and the paper's recall by size."""
    latest, results = shapes_step_and_test(f"{name}.py", tmp_path)
    assert math.isfinite(latest["total_loss"]) and latest["num_pos_anchors"] >= 1
    assert latest["num_mined_negatives"] == pytest.approx(3 * latest["num_pos_anchors"])
    if "scb" in name:
        assert latest["scb/mean_pos_anchor_weight"] > 0
    assert set(results["bbox"]) >= {"AP", "AP50", "APs", "APm", "APl"}
    assert {"recall_small@0.3", "recall_large@0.01"} <= set(results["recall_by_size"])


def test_extra_norm_reaches_the_extra_blocks_and_changes_their_output():
    """extra_norm="" (default): plain convolutions with bias; "BN": BatchNorm in every extra block, and
    the extra maps change (same seed, same input)."""
    import torch
    from torch import nn

    from d2imbalance.modeling import DSSDResNet

    def build(**kw):
        torch.manual_seed(0)
        return DSSDResNet(input_size=321, depth=50, width_ratio=1 / 16, norm="BN", freeze_at=0, **kw).eval()

    EXTRA = ("res6", "res7", "res8", "res9")  # DSSD321's extra residual blocks
    plain, normed = build(), build(extra_norm="BN")
    extra_plain = [m for n, m in plain.named_modules() if n.split(".")[0] in EXTRA and isinstance(m, nn.BatchNorm2d)]
    extra_normed = [m for n, m in normed.named_modules() if n.split(".")[0] in EXTRA and isinstance(m, nn.BatchNorm2d)]
    assert not extra_plain and extra_normed
    x = torch.rand(1, 3, 321, 321)
    a, b = plain(x), normed(x)
    last = list(a)[-1]
    assert not torch.allclose(a[last], b[last])
