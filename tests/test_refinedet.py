"""RefineDet (d2imbalance.modeling.refinedet) and RefineDet-SCB (projects/ScaleBalanced): the backbone's maps
and the anchor counts by hand, the transfer connection block on a crafted input, negative anchor
filtering and the ODM's decoding from refined anchors on crafted predictions, the two modules' losses
against SSD's multibox loss, the SCB switches (ARM, ODM, the `const` form) and every RefineDet config.
"""
import math
import os

import pytest
import torch

from test_ssd import _instances, shapes_step_and_test

pytestmark = pytest.mark.detectron2

ROOT = os.path.join(os.path.dirname(__file__), "..")
LN199 = math.log(199.0)  # logits (0, ln 199): background probability 199 / 200 = 0.995


def _tiny_refinedet(cls=None, input_size=320, num_classes=3, **kwargs):
    """RefineDet320 (or 512) at 1/16 width with the paper's anchors; ``cls``: a RefineDet subclass."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import RefineDet, RefineDetHead, RefineDetVGG, SSDAnchorGenerator

    torch.manual_seed(0)
    backbone = RefineDetVGG(input_size=input_size, width_ratio=1 / 16)
    head = RefineDetHead(
        input_shape=[ShapeSpec(channels=s.channels) for s in backbone.output_shape().values()],
        num_classes=num_classes, num_anchors=[3] * 4, tcb_channels=16,
    )  # fmt: skip
    anchors = SSDAnchorGenerator(
        min_sizes=[32, 64, 128, 256], max_sizes=None, aspect_ratios=[[2]] * 4, strides=[8, 16, 32, 64]
    )
    return (cls or RefineDet)(
        backbone=backbone, head=head, anchor_generator=anchors, num_classes=num_classes,
        pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0], **kwargs,
    )  # fmt: skip


def _batch():
    """Two 320x320 images: a small (24x24), a medium and a large object in image 0, one object in image 1."""
    torch.manual_seed(1)
    return [
        {"image": torch.rand(3, 320, 320) * 255,
         "instances": _instances([[100, 100, 124, 124], [20, 150, 100, 230], [150, 20, 310, 200]], [0, 2, 1])},
        {"image": torch.rand(3, 320, 320) * 255, "instances": _instances([[40, 40, 140, 120]], [1])},
    ]  # fmt: skip


def _losses(model, inputs):
    from detectron2.utils.events import EventStorage

    with EventStorage() as storage:
        losses = model(inputs)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return losses, scalars


# ----------------------------------------------------------------------------- backbone and anchors
@pytest.mark.parametrize("size,maps,count", [(320, [40, 20, 10, 5], 6375), (512, [64, 32, 16, 8], 16320)])
def test_maps_and_anchor_counts_by_hand(size, maps, count):
    """3 anchors per location: 320 -> 3 (1600 + 400 + 100 + 25) = 6375; 512 -> 3 (4096 + 1024 + 256 + 64)
    = 16320. conv5_3 is its own output (stride 16) and fc7 is at stride 32: pool5 is 2x2 stride 2."""
    model = _tiny_refinedet(input_size=size)
    assert sum(m * m * 3 for m in maps) == count
    features = model.backbone(torch.zeros(1, 3, size, size))
    assert list(features) == ["conv4_3", "conv5_3", "fc7", "conv6_2"]
    assert [f.shape[-1] for f in features.values()] == maps
    assert [s.stride for s in model.backbone.output_shape().values()] == [8, 16, 32, 64]
    assert [f.shape[1] for f in features.values()] == [32, 32, 64, 32]  # 512, 512, 1024, 512 at 1/16
    anchors = model.anchor_generator(list(features.values()))
    assert sum(len(a) for a in anchors) == count
    first = anchors[0].tensor[:3]  # location (0, 0), centre (4, 4): 32x32, 45.25x22.63, 22.63x45.25
    r2 = math.sqrt(2.0)
    wh = [(32, 32), (32 * r2, 32 / r2), (32 / r2, 32 * r2)]
    assert torch.allclose(first, torch.tensor([[4 - w / 2, 4 - h / 2, 4 + w / 2, 4 + h / 2] for w, h in wh]))
    assert anchors[3].tensor[0].tolist() == pytest.approx([32 - 128, 32 - 128, 32 + 128, 32 + 128])


def test_backbone_is_the_refinedet_vgg():
    """pool5 2x2/2, fc6 dilation 3, L2Norm on conv4_3 (10) and conv5_3 (8), conv6_1 1x1/256 + conv6_2
    3x3/512 stride 2 (at width 1)."""
    from d2imbalance.modeling import RefineDetVGG

    vgg = RefineDetVGG(input_size=320)
    assert (vgg.pool5.kernel_size, vgg.pool5.stride, vgg.pool5.padding) == (2, 2, 0)
    assert vgg.fc6.dilation == (3, 3) and vgg.fc6.padding == (3, 3) and vgg.fc6.out_channels == 1024
    assert torch.all(vgg.conv4_3_norm.weight == 10.0) and torch.all(vgg.conv5_3_norm.weight == 8.0)
    assert (vgg.conv6_1.kernel_size, vgg.conv6_1.out_channels) == ((1, 1), 256)
    assert (vgg.conv6_2.stride, vgg.conv6_2.out_channels) == ((2, 2), 512)
    assert [s.channels for s in vgg.output_shape().values()] == [512, 512, 1024, 512]
    custom = RefineDetVGG(input_size=320, width_ratio=1 / 16, l2norm_scales=(3.0, 5.0))
    x = torch.rand(1, 3, 320, 320)
    out = custom(x)
    # conv5_3's output is L2-normalised then scaled by 5: every location's channel vector has norm 5.
    assert torch.allclose(out["conv5_3"].norm(dim=1), torch.full((20, 20), 5.0), atol=1e-4)
    assert torch.allclose(out["conv4_3"].norm(dim=1), torch.full((40, 40), 3.0), atol=1e-4)
    with pytest.raises(ValueError, match=r"RefineDetVGG is built for input sizes \[320, 512\]"):
        RefineDetVGG(input_size=300)


# ----------------------------------------------------------------------------- transfer connection block
def _identity_tcb(top):
    from d2imbalance.modeling import TransferConnectionBlock

    tcb = TransferConnectionBlock(1, 1, top=top)
    with torch.no_grad():
        for conv in (tcb.conv1, tcb.conv2, tcb.out):
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0  # 3x3 identity
        if tcb.upsample is not None:
            tcb.upsample.weight.fill_(1.0)  # each upper value copied to its 2x2 block
    return tcb


def test_transfer_connection_block_by_hand():
    """Identity convolutions, an all-ones 2x2 deconvolution. x = [[1, -2], [3, 4]], upper = -1:
    relu(x) = [[1, 0], [3, 4]]; + deconv(-1) = [[0, -1], [2, 3]]; relu -> [[0, 0], [2, 3]]; conv + relu.
    The top block adds nothing and applies a ReLU after its second convolution."""
    x = torch.tensor([[[[1.0, -2.0], [3.0, 4.0]]]])
    lower = _identity_tcb(top=False)
    assert lower(x, torch.tensor([[[[-1.0]]]])).tolist() == [[[[0.0, 0.0], [2.0, 3.0]]]]
    assert lower(x, torch.tensor([[[[2.0]]]])).tolist() == [[[[3.0, 2.0], [5.0, 6.0]]]]
    top = _identity_tcb(top=True)
    assert top.upsample is None
    assert top(-x).tolist() == [[[[0.0, 2.0], [0.0, 0.0]]]]  # relu(-x) = [[0, 2], [0, 0]], kept by the identities
    assert top(x).tolist() == [[[[1.0, 0.0], [3.0, 4.0]]]]
    with pytest.raises(ValueError, match=r"doubles \(2, 2\) to \(4, 4\) but the map below is \(2, 2\)"):
        lower(x, torch.zeros(1, 1, 2, 2))


def test_head_runs_the_tcbs_top_down():
    """The ODM's maps depend on the maps above (through the deconvolutions), the ARM's only on their own."""
    model = _tiny_refinedet()
    features = [f for f in model.backbone(torch.rand(1, 3, 320, 320)).values()]
    arm_logits, arm_deltas, odm_logits, odm_deltas = model.head(features)
    assert [x.shape[1] for x in arm_logits] == [6] * 4 and [x.shape[1] for x in odm_logits] == [12] * 4
    assert [x.shape[-1] for x in odm_deltas] == [40, 20, 10, 5]
    changed = features[:3] + [features[3] + 1.0]  # only the top map
    arm2, _, odm2, _ = model.head(changed)
    assert torch.equal(arm2[0], arm_logits[0]) and not torch.allclose(odm2[0], odm_logits[0])


# ----------------------------------------------------------------------------- negative anchor filtering
def _one_map_refinedet(**kwargs):
    """RefineDet predicting from conv4_3 only, so that predictions can be written by hand: a 2x2 map has
    12 anchors, anchor r = (row * 2 + col) * 3 + a."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import RefineDet, RefineDetHead, RefineDetVGG, SSDAnchorGenerator

    backbone = RefineDetVGG(input_size=320, width_ratio=1 / 16)
    head = RefineDetHead(input_shape=[ShapeSpec(channels=32)], num_classes=2, num_anchors=[3], tcb_channels=4)
    anchors = SSDAnchorGenerator(min_sizes=[32], max_sizes=None, aspect_ratios=[[2]], strides=[8])
    return RefineDet(
        backbone=backbone, head=head, head_in_features=["conv4_3"], anchor_generator=anchors, num_classes=2,
        pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3, **kwargs,
    )  # fmt: skip


def _crafted_predictions():
    """Anchor 0 (32x32 at (4, 4)): ARM background 0.995, ODM class 1 at ~1. Anchor 1 (45.25x22.63 at (4, 4)):
    ARM background 0.985, ARM dx = 1 and ODM dx = 1 (each moves the box by 0.1 of its width), ODM class 0.
    Every other anchor: ODM background."""
    arm_logits = torch.zeros(1, 3 * 2, 2, 2)
    arm_logits[0, 1, 0, 0] = LN199  # anchor 0: (object, background) = (0, ln 199)
    arm_logits[0, 3, 0, 0] = math.log(65.0 + 2.0 / 3.0)  # anchor 1: background 0.985
    arm_deltas = torch.zeros(1, 3 * 4, 2, 2)
    arm_deltas[0, 4, 0, 0] = 1.0  # anchor 1's dx (Box2BoxTransform weight 10: 0.1 of the width)
    odm_logits = torch.zeros(1, 3 * 3, 2, 2)
    odm_logits[0, 2::3] = 10.0  # background everywhere ...
    odm_logits[0, 2, 0, 0] = odm_logits[0, 5, 0, 0] = 0.0
    odm_logits[0, 1, 0, 0] = odm_logits[0, 3, 0, 0] = 10.0  # ... but class 1 on anchor 0, class 0 on anchor 1
    odm_deltas = torch.zeros(1, 3 * 4, 2, 2)
    odm_deltas[0, 4, 0, 0] = 1.0
    return [[arm_logits], [arm_deltas], [odm_logits], [odm_deltas]]


def test_negative_anchor_filtering_and_decoding_from_the_refined_anchor():
    """Anchor 0 (ARM background 0.995 > 0.99) yields no detection; anchor 1 (0.985) is decoded twice:
    centre x 4 -> 4 + 0.1 w (ARM) -> 4 + 0.2 w (ODM), w = 32 sqrt 2, size unchanged."""
    from detectron2.structures import ImageList

    model = _one_map_refinedet().eval()
    images = ImageList(torch.zeros(1, 3, 16, 16), [(16, 16)])
    with torch.no_grad():
        (result,) = model.forward_inference(images, [torch.zeros(1, 32, 2, 2)], _crafted_predictions())
    w, h = 32 * math.sqrt(2.0), 32 / math.sqrt(2.0)
    cx = 4 + 0.2 * w
    assert len(result) == 1 and result.pred_classes.tolist() == [0]
    assert result.scores.item() == pytest.approx(math.exp(10) / (math.exp(10) + 2), rel=1e-5)
    assert result.pred_boxes.tensor[0].tolist() == pytest.approx([cx - w / 2, 4 - h / 2, cx + w / 2, 4 + h / 2], rel=1e-5)
    # θ = 1.0 turns filtering off: anchor 0 (the 32x32 box, undisplaced) is detected too.
    model.negative_anchor_threshold = 1.0
    with torch.no_grad():
        (result,) = model.forward_inference(images, [torch.zeros(1, 32, 2, 2)], _crafted_predictions())
    assert sorted(result.pred_classes.tolist()) == [0, 1]
    assert result.pred_boxes.tensor[result.pred_classes == 1].tolist() == [[-12.0, -12.0, 20.0, 20.0]]


def test_a_filtered_anchor_gets_no_odm_loss_and_the_odm_matches_refined_anchors():
    """A 32x32 object exactly on anchor 0. The ODM matches the refined anchors (anchor 1 moved by its ARM
    dx) and anchor 0 among them, but anchor 0 is filtered (ARM background 0.995): it is no ODM positive
    and gets no ODM gradient, while the ARM still trains on it. θ = 1 gives it back to the ODM."""
    from detectron2.structures import Boxes
    from detectron2.utils.events import EventStorage

    model = _one_map_refinedet()
    predictions = [[p.requires_grad_(True)] for (p,) in _crafted_predictions()]
    gt = [_instances([[-12, -12, 20, 20]], [1])]
    anchors = Boxes.cat(model.anchor_generator([torch.zeros(1, 32, 2, 2)])).tensor
    arm, odm = model.targets(anchors, predictions, gt)
    assert arm.matched_idxs[0, 0] == 0 and arm.labels[0, 0] == 0  # object
    assert odm.matched_idxs[0, 0] == 0 and odm.labels[0, 0] == 1  # class 1 on the refined anchor 0 ...
    assert odm.ignore[0].tolist() == [True] + [False] * 11  # ... which the filter removes (0.985 stays)
    assert torch.allclose(odm.priors[0, 1, [0, 2]] - anchors[1, [0, 2]], torch.full((2,), 0.1 * 32 * math.sqrt(2.0)))
    assert torch.equal(odm.priors[0, 0], anchors[0])
    matches = int((odm.matched_idxs >= 0).sum())
    with EventStorage() as storage:
        losses = model.losses(arm, odm)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    assert scalars["num_pos_anchors"] == matches - 1 and scalars["odm/filtered_anchor_fraction"] == pytest.approx(1 / 12)
    assert scalars["arm/num_pos_anchors"] == int((arm.matched_idxs >= 0).sum())
    sum(losses.values()).backward()
    assert torch.all(predictions[2][0].grad[0, 0:3, 0, 0] == 0) and torch.all(predictions[3][0].grad[0, 0:4, 0, 0] == 0)
    assert torch.any(predictions[2][0].grad[0, 3:6, 0, 0] != 0)  # anchor 1 is an ODM positive
    assert torch.any(predictions[0][0].grad[0, 0:2, 0, 0] != 0)  # the ARM trains anchor 0
    model.negative_anchor_threshold = 1.0
    for p in predictions:
        p[0].grad = None
    arm, odm = model.targets(anchors, predictions, gt)
    with EventStorage() as storage:
        sum(model.losses(arm, odm).values()).backward()
        assert storage.latest()["num_pos_anchors"][0] == matches
    assert torch.any(predictions[2][0].grad[0, 0:3, 0, 0] != 0)


def test_losses_are_ssd_multibox_losses_of_each_module():
    """loss_arm_* = SSD's multibox loss of the ARM (2 classes, anchors); loss_cls / loss_box_reg = that of the
    ODM (K + 1 classes, refined anchors, filtered anchors ignored); the ODM's targets never carry gradient."""
    from d2imbalance.modeling.ssd_ops import multibox_loss

    model = _tiny_refinedet()
    spy = {}
    original = model.losses

    def losses(arm, odm, **kwargs):
        spy.update(arm=arm, odm=odm)
        return original(arm, odm, **kwargs)

    model.losses = losses
    out, _ = _losses(model, _batch())
    arm, odm = spy["arm"], spy["odm"]
    assert not odm.priors.requires_grad and odm.logits.requires_grad
    for module, names in ((arm, ("loss_arm_cls", "loss_arm_box_reg")), (odm, ("loss_cls", "loss_box_reg"))):
        priors = module.priors.expand_as(module.gt_boxes).reshape(-1, 4)
        gt_deltas = model.box2box_transform.get_deltas(priors, module.gt_boxes.reshape(-1, 4)).view_as(module.gt_boxes)
        ref = multibox_loss(module.logits, module.labels, module.deltas, gt_deltas, ignore=module.ignore)
        assert out[names[0]].item() == pytest.approx(ref[0].item(), rel=1e-6)
        assert out[names[1]].item() == pytest.approx(ref[1].item(), rel=1e-6)
    assert arm.logits.shape[-1] == 2 and odm.logits.shape[-1] == 4 and arm.ignore is None
    assert set(arm.labels.unique().tolist()) == {0, 1}


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match=r"negative_anchor_threshold=0.0 must be in \(0, 1\]"):
        _tiny_refinedet(negative_anchor_threshold=0.0)


# ----------------------------------------------------------------------------- RefineDet-SCB
def _scb(**kwargs):
    from scale_balanced import RefineDetSCB

    return _tiny_refinedet(cls=RefineDetSCB, **kwargs)


def test_const_form_gives_vanilla_refinedet_losses_exactly():
    vanilla, vanilla_scalars = _losses(_tiny_refinedet(), _batch())
    const, const_scalars = _losses(_scb(weighting_form="const", weight_arm=True, weight_odm=True), _batch())
    for k in vanilla:
        assert torch.equal(vanilla[k], const[k]), k
    for k in ("num_mined_negatives", "arm/num_mined_negatives"):
        assert const_scalars[k] == vanilla_scalars[k]


@pytest.mark.parametrize(
    "switches,changed",
    [
        ({}, {"loss_arm_cls"}),  # the paper's default: the ARM only
        ({"weight_odm": True}, {"loss_arm_cls", "loss_cls"}),
        ({"weight_arm": False, "weight_odm": True}, {"loss_cls"}),
        ({"weight_box_loss": True}, {"loss_arm_cls", "loss_arm_box_reg"}),
        ({"weight_odm": True, "weight_box_loss": True}, {"loss_arm_cls", "loss_arm_box_reg", "loss_cls", "loss_box_reg"}),
    ],
)
def test_each_switch_weights_exactly_its_modules_losses(switches, changed):
    vanilla, _ = _losses(_tiny_refinedet(), _batch())
    weighted, scalars = _losses(_scb(**switches), _batch())
    differ = {k for k in vanilla if not torch.equal(vanilla[k], weighted[k])}
    assert differ == changed
    assert ("scb/arm/mean_pos_anchor_weight" in scalars) == switches.get("weight_arm", True)
    assert ("scb/odm/mean_pos_anchor_weight" in scalars) == switches.get("weight_odm", False)


def test_arm_weights_by_hand():
    """ARM-only: loss_arm_cls = (Σ W_i CE on positives + CE of mined negatives) / positives with
    W = 3 (ln M + 1) / M, M counted on the ARM's matching."""
    import torch.nn.functional as F

    from scale_balanced import RefineDetSCB

    model = _scb()
    spy = {}
    original = RefineDetSCB.losses

    def losses(arm, odm, **kwargs):
        spy.update(arm=arm, kwargs=kwargs)
        return original(model, arm, odm, **kwargs)

    model.losses = losses
    out, _ = _losses(model, _batch())
    arm = spy["arm"]
    matched = arm.matched_idxs
    expected_w = torch.ones_like(matched, dtype=torch.float32)
    for n in range(len(matched)):
        for g in matched[n][matched[n] >= 0].unique().tolist():
            m = int((matched[n] == g).sum())
            expected_w[n][matched[n] == g] = 3 * (math.log(m) + 1) / m
    assert torch.allclose(spy["kwargs"]["arm_cls_weights"], expected_w)
    assert set(spy["kwargs"]) == {"arm_cls_weights"}
    ce = F.cross_entropy(arm.logits.flatten(0, 1), arm.labels.flatten(), reduction="none").view_as(arm.labels)
    pos = arm.labels == 0
    total = (expected_w * ce)[pos].sum()
    for n in range(len(pos)):
        total += ce[n][~pos[n]].sort(descending=True).values[: 3 * int(pos[n].sum())].sum()
    assert out["loss_arm_cls"].item() == pytest.approx((total / pos.sum()).item(), rel=1e-5)


def test_odm_counts_only_the_anchors_it_trains_on(monkeypatch):
    """The ODM's M_i is counted after negative anchor filtering: filtered matched anchors count as background."""
    import scale_balanced.refinedet as module

    seen = []

    def spy(matched_idxs, gt_instances, **kwargs):
        seen.append((kwargs["log_prefix"], torch.stack(matched_idxs)))
        return torch.ones(torch.stack(matched_idxs).shape)

    monkeypatch.setattr(module, "ssd_prior_weights", spy)
    model = _scb(weight_arm=False, weight_odm=True)
    model.negative_anchor_threshold = 0.5  # an untrained ARM filters many anchors at 0.5
    captured = {}
    original = model.targets

    def targets(*args):
        captured["arm"], captured["odm"] = original(*args)
        return captured["arm"], captured["odm"]

    model.targets = targets
    _losses(model, _batch())
    (prefix, counted), = seen
    odm = captured["odm"]
    assert prefix == "scb/odm"
    assert (odm.ignore & (odm.matched_idxs >= 0)).any()  # the case is non-trivial
    assert torch.equal(counted, odm.matched_idxs.masked_fill(odm.ignore, -1))


def test_scb_refuses_weighting_nothing_and_unknown_forms():
    with pytest.raises(ValueError, match="weights nothing: that is vanilla RefineDet"):
        _scb(weight_arm=False, weight_odm=False)
    with pytest.raises(ValueError, match="weighting_form='cubic' is not one of"):
        _scb(weighting_form="cubic")


# ----------------------------------------------------------------------------- configs
CONFIGS = {
    "Baselines/refinedet320_voc0712.py": (320, None, None),
    "Baselines/refinedet512_voc0712.py": (512, None, None),
    "ScaleBalanced/refinedet320_scb_voc0712.py": (320, True, False),
    "ScaleBalanced/refinedet320_scb_voc0712_arm_odm.py": (320, True, True),
    "ScaleBalanced/refinedet512_scb_voc0712.py": (512, True, False),
    "Baselines/refinedet320_shapes.py": (320, None, None),
    "ScaleBalanced/refinedet320_scb_shapes.py": (320, True, False),
    "ScaleBalanced/refinedet320_scb_shapes_arm_odm.py": (320, True, True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_refinedet_configs_build_the_model_they_name(name):
    """Input size, the SCB switches, the recipe's test settings and the data resize at the model's size;
    the full-width configs build RefineDet's 6375 / 16320 anchors (no forward pass)."""
    from detectron2.config import instantiate

    from d2imbalance import get_config

    size, arm, odm = CONFIGS[name]
    cfg = get_config(name)
    model = instantiate(cfg.model)
    assert type(model).__name__ == ("RefineDet" if arm is None else "RefineDetSCB")
    assert model.backbone.input_size == size
    if arm is not None:
        assert (model.weight_arm, model.weight_odm) == (arm, odm)
        assert (model.weighting_form, model.scb_alpha, model.scb_beta, model.weight_box_loss) == (
            "scale_balanced", 1.0, 3.0, False,
        )
    assert (model.test_score_thresh, model.test_topk_per_class, model.test_nms_thresh) == (0.01, 1000, 0.45)
    assert model.max_detections_per_image == 500 and model.negative_anchor_threshold == 0.99
    assert tuple(cfg.dataloader.train.mapper.augmentations[3].shape) == (size, size)
    assert tuple(cfg.dataloader.test.mapper.augmentations[0].shape) == (size, size)
    maps = [size // s for s in (8, 16, 32, 64)]
    assert sum(len(a) for a in model.anchor_generator([torch.zeros(1, 1, m, m) for m in maps])) == 3 * sum(
        m * m for m in maps
    )
    if "shapes" not in name:
        assert cfg.train.init_checkpoint == "torchvision-vgg16://IMAGENET1K_V1"
        assert cfg.train.lr_reference == dict(lr=1e-3, total_batch_size=32) and cfg.train.max_iter == 120000


@pytest.mark.parametrize(
    "name", ["Baselines/refinedet320_shapes.py", "ScaleBalanced/refinedet320_scb_shapes_arm_odm.py"]
)
def test_refinedet_shapes_configs_train_a_step_and_evaluate(name, tmp_path):
    latest, results = shapes_step_and_test(name, tmp_path)
    for key in ("loss_arm_cls", "loss_arm_box_reg", "loss_cls", "loss_box_reg"):
        assert math.isfinite(latest[key]) and latest[key] > 0, key
    assert latest["num_mined_negatives"] == pytest.approx(3 * latest["num_pos_anchors"])
    assert latest["arm/num_mined_negatives"] == pytest.approx(3 * latest["arm/num_pos_anchors"])
    assert ("scb/odm/mean_pos_anchor_weight" in latest) == ("arm_odm" in name)
    assert set(results["bbox"]) >= {"AP", "APs"} and "recall_small@0.3" in results["recall_by_size"]
