"""RetinaNetConfHead / RetinaNetConf (and the IoU-aware variant) on tiny models, on CPU, and the
misalignment analysis run on such a model."""

import numpy as np
import pytest
import torch
from torch import nn

from d2imbalance._compat import detectron2_available

pytestmark = pytest.mark.detectron2

if (
    detectron2_available()
):  # without detectron2 the module still collects, and its tests are skipped
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import Backbone
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.structures import Boxes, Instances, pairwise_iou
    from detectron2.utils.events import EventStorage

    from objconf import IoUAwareRetinaNetHead, RetinaNetConf, RetinaNetConfHead
    from objconf.fusion import fuse_scores
else:
    Backbone = nn.Module

NUM_CLASSES = 3
STRIDES = [8, 16, 32, 64, 128]
CHANNELS = 8


class TinyBackbone(Backbone):
    """p3..p7 from strided convs: on a 200x250 image the levels are 25x31 ... 2x2 (36 anchors at p7)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, CHANNELS, kernel_size=8, stride=8)
        self.downs = nn.ModuleList(
            nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1) for _ in STRIDES[1:]
        )

    def forward(self, x):
        out = {"p3": torch.relu(self.stem(x))}
        for i, down in enumerate(self.downs):
            out[f"p{i + 4}"] = torch.relu(down(out[f"p{i + 3}"]))
        return out

    def output_shape(self):
        return {f"p{i + 3}": ShapeSpec(channels=CHANNELS, stride=s) for i, s in enumerate(STRIDES)}


def build_model(head_cls=None, **kwargs):
    torch.manual_seed(0)
    head_cls = head_cls or RetinaNetConfHead
    head = head_cls(
        input_shape=[ShapeSpec(channels=CHANNELS)] * 5,
        num_classes=NUM_CLASSES,
        conv_dims=[CHANNELS, CHANNELS],
        num_anchors=9,
    )
    return RetinaNetConf(
        backbone=TinyBackbone(),
        head=head,
        head_in_features=[f"p{i}" for i in range(3, 8)],
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[s * 4, s * 4 * 2 ** (1 / 3), s * 4 * 2 ** (2 / 3)] for s in STRIDES],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=STRIDES,
            offset=0.0,
        ),
        box2box_transform=Box2BoxTransform(weights=[1.0, 1.0, 1.0, 1.0]),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        num_classes=NUM_CLASSES,
        pixel_mean=[103.53, 116.28, 123.675],
        pixel_std=[57.375, 57.12, 58.395],
        **kwargs,
    )


def make_inputs(with_gt=True):
    g = torch.Generator().manual_seed(1)
    inputs = []
    for h, w in [(200, 250), (250, 200)]:
        inst = Instances((h, w))
        if with_gt:
            inst.gt_boxes = Boxes(torch.tensor([[10.0, 20, 90, 110], [100, 40, 190, 150]]))
            inst.gt_classes = torch.tensor([0, 2])
        else:
            inst.gt_boxes = Boxes(torch.zeros(0, 4))
            inst.gt_classes = torch.zeros(0, dtype=torch.long)
        inputs.append(
            {"image": torch.randint(0, 256, (3, h, w), generator=g).float(), "instances": inst}
        )
    return inputs


# ----------------------------------------------------------------------------- head


@pytest.mark.parametrize(
    "head_cls, tower", [("RetinaNetConfHead", "cls"), ("IoUAwareRetinaNetHead", "box")]
)
def test_head_shapes_init_and_tower(head_cls, tower):
    head_cls = {
        "RetinaNetConfHead": RetinaNetConfHead,
        "IoUAwareRetinaNetHead": IoUAwareRetinaNetHead,
    }[head_cls]
    # Two tower convs of different widths: the confidence conv reads the last one (6 channels).
    head = head_cls(
        input_shape=[ShapeSpec(channels=4)] * 2, num_classes=3, conv_dims=[5, 6], num_anchors=2
    )
    assert head.conf_tower == tower
    assert head.conf_pred.in_channels == 6 and head.conf_pred.kernel_size == (3, 3)
    assert torch.equal(head.conf_pred.bias, torch.zeros(2))
    feats = [torch.randn(2, 4, 6, 5), torch.randn(2, 4, 3, 3)]
    logits, deltas, conf = head(feats)
    assert [tuple(x.shape) for x in logits] == [(2, 6, 6, 5), (2, 6, 3, 3)]  # A*K
    assert [tuple(x.shape) for x in deltas] == [(2, 8, 6, 5), (2, 8, 3, 3)]  # A*4
    assert [tuple(x.shape) for x in conf] == [(2, 2, 6, 5), (2, 2, 3, 3)]  # A
    # The confidence depends on its own tower only.
    other = head.bbox_subnet if tower == "cls" else head.cls_subnet
    own = head.cls_subnet if tower == "cls" else head.bbox_subnet
    with torch.no_grad():
        other[0].weight.add_(1.0)
        assert torch.equal(head(feats)[2][0], conf[0])
        own[0].weight.add_(1.0)
        assert not torch.equal(head(feats)[2][0], conf[0])


def test_confidence_conv_init_like_the_box_predictor():
    """Weights N(0, 0.01), bias 0 (every confidence starts at 1/2): over 64 x 9 x 3 x 3 = 5184
    weights the sample mean is within 3 standard errors (0.01 / 72 = 1.4e-4) of 0 and the sample
    std within 3 % of 0.01."""
    torch.manual_seed(0)
    head = RetinaNetConfHead(
        input_shape=[ShapeSpec(channels=64)], num_classes=3, conv_dims=[64], num_anchors=9
    )
    weight = head.conf_pred.weight
    assert weight.numel() == 5184
    assert abs(weight.mean().item()) < 4.2e-4
    assert weight.std().item() == pytest.approx(0.01, rel=0.03)


def test_bad_switches_raise():
    with pytest.raises(ValueError, match="conf_tower"):
        RetinaNetConfHead(
            input_shape=[ShapeSpec(channels=4)],
            num_classes=3,
            conv_dims=[4],
            num_anchors=1,
            conf_tower="both",
        )
    with pytest.raises(ValueError, match="Unknown confidence loss"):
        build_model(conf_loss_type="focal")
    with pytest.raises(ValueError, match="Unknown score fusion"):
        build_model(score_fusion="max")
    with pytest.raises(ValueError, match="conf_loss_normalizer"):
        build_model(conf_loss_normalizer="all")
    with pytest.raises(ValueError, match="alpha=1.5"):
        build_model(fusion_alpha=1.5)
    with pytest.raises(ValueError, match="conf_thresh=1.0"):
        build_model(conf_filter_thresh=1.0)
    with pytest.raises(ValueError, match="conf_neg_weight=-0.1"):
        build_model(conf_neg_weight=-0.1)
    for name in ("cls", "box", "conf"):
        with pytest.raises(ValueError, match=f"{name}_loss_weight=-1"):
            build_model(**{f"{name}_loss_weight": -1.0})
    build_model(cls_loss_weight=0.0, box_loss_weight=0.0, conf_loss_weight=0.0)  # 0 switches off


def test_head_must_return_a_confidence():
    """A plain RetinaNetHead (two outputs) in RetinaNetConf fails with the fix named, not deep inside."""
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

    model = build_model()
    model.head = RetinaNetHead(
        input_shape=[ShapeSpec(channels=CHANNELS)] * 5,
        num_classes=NUM_CLASSES,
        conv_dims=[CHANNELS],
        num_anchors=9,
    )
    model.train()
    with EventStorage(), pytest.raises(ValueError, match="got 2 outputs.*RetinaNetConfHead"):
        model(make_inputs())


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("head_cls", ["RetinaNetConfHead", "IoUAwareRetinaNetHead"])
def test_seeded_training_step_and_inference(head_cls):
    model = build_model(
        {"RetinaNetConfHead": RetinaNetConfHead, "IoUAwareRetinaNetHead": IoUAwareRetinaNetHead}[
            head_cls
        ]
    )
    model.train()
    with EventStorage() as storage:
        losses = model(make_inputs())
        assert set(losses) == {"loss_cls", "loss_box_reg", "loss_conf"}
        for name, value in losses.items():
            assert torch.isfinite(value) and value.item() > 0, name
        sum(losses.values()).backward()
        assert model.head.conf_pred.weight.grad.abs().sum() > 0
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    for key in (
        "mean_conf_pos",
        "mean_iou_target",
        "mean_cls_pos",
        "corr_conf_iou",
        "corr_cls_iou",
    ):
        assert f"objconf/{key}" in scalars
    assert scalars["objconf/mean_conf_pos"] == pytest.approx(
        0.5, abs=0.05
    )  # bias 0, weights ~N(0, .01)
    assert 0 < scalars["objconf/mean_iou_target"] <= 1
    assert -1 <= scalars["objconf/corr_conf_iou"] <= 1

    model.eval()
    with torch.no_grad():
        outputs = model(make_inputs())
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(200, 250), (250, 200)]):
        inst = out["instances"]
        assert inst.image_size == (h, w)
        assert len(inst) <= model.max_detections_per_image
        assert ((inst.scores > model.test_score_thresh) & (inst.scores <= 1)).all()


@pytest.mark.parametrize("conf_loss_type", ["ce", "ce_w"])
def test_images_without_ground_truth(conf_loss_type):
    """No positives: no box loss, focal loss still defined, "ce" confidence loss 0 and "ce_w" the
    negatives' term only, linear in w (normalised by max(N_pos, 1) = 1)."""
    losses = {}
    for w in (1e-4, 1e-3):
        model = build_model(conf_loss_type=conf_loss_type, conf_neg_weight=w)
        model.train()
        with EventStorage():
            losses[w] = model(make_inputs(with_gt=False))
        assert all(torch.isfinite(v) for v in losses[w].values())
        assert losses[w]["loss_box_reg"].item() == 0.0
        assert losses[w]["loss_cls"].item() > 0
    if conf_loss_type == "ce":
        assert losses[1e-4]["loss_conf"].item() == 0.0
    else:
        assert losses[1e-4]["loss_conf"].item() > 0
        assert losses[1e-3]["loss_conf"].item() == pytest.approx(
            10 * losses[1e-4]["loss_conf"].item(), rel=1e-5
        )


def _loss_conf_and_inputs(model):
    """loss_conf and the per-level box deltas / conf logits that produced it."""
    model.train()
    inputs = make_inputs()
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    predictions = model.head(features)
    for level in predictions[1]:
        level.retain_grad()
    gt = [x["instances"] for x in inputs]
    with EventStorage():
        losses = model.forward_training(images, features, predictions, gt)
    return losses, predictions


def test_iou_target_equals_pairwise_iou_of_decoded_boxes():
    model = build_model()
    model.train()
    inputs = make_inputs()
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    logits, deltas, conf = model._split_predictions(model.head(features))
    anchors = model.anchor_generator(features)
    gt_labels, gt_boxes = model.label_anchors(anchors, [x["instances"] for x in inputs])
    labels = torch.stack(gt_labels)
    pos_mask = (labels >= 0) & (labels != NUM_CLASSES)
    assert pos_mask.sum() > 10
    _, iou_target, _ = model._positive_predictions(
        anchors, logits, deltas, conf, labels, pos_mask, gt_boxes
    )

    # Reference: decode every anchor of every image, take detectron2's pairwise IoU with the matched
    # ground truth, keep the diagonal at the positives. Order: level by level, image-major inside.
    all_anchors = Boxes.cat(anchors).tensor
    expected = []
    start = 0
    for level_anchors in anchors:
        end = start + len(level_anchors)
        for n in range(len(inputs)):
            decoded = model.box2box_transform.apply_deltas(torch.cat(deltas, dim=1)[n], all_anchors)
            pos = pos_mask[n, start:end]
            ious = pairwise_iou(Boxes(decoded[start:end][pos]), Boxes(gt_boxes[n][start:end][pos]))
            expected.append(ious.diagonal())
        start = end
    expected = torch.cat(expected)
    assert iou_target.shape == expected.shape
    assert torch.allclose(iou_target, expected, atol=1e-6)


@pytest.mark.parametrize("detach", [None, False, True])
def test_detach_switch_blocks_or_passes_gradient_into_box_branch(detach):
    """The default (None here: not passed) is the authors' code, not detached."""
    model = build_model() if detach is None else build_model(detach_iou_target=detach)
    losses, predictions = _loss_conf_and_inputs(model)
    losses["loss_conf"].backward()
    box_grad = sum(level.grad.abs().sum() for level in predictions[1] if level.grad is not None)
    bbox_tower_grad = model.head.bbox_pred.weight.grad
    if detach:
        assert box_grad == 0
        assert bbox_tower_grad is None or bbox_tower_grad.abs().sum() == 0
    else:
        assert box_grad > 0
        assert bbox_tower_grad.abs().sum() > 0


def test_loss_weights_scale_losses():
    base, _ = _loss_conf_and_inputs(build_model())
    scaled, _ = _loss_conf_and_inputs(
        build_model(cls_loss_weight=2.0, box_loss_weight=0.5, conf_loss_weight=3.0)
    )
    for name, w in (("loss_cls", 2.0), ("loss_box_reg", 0.5), ("loss_conf", 3.0)):
        assert scaled[name].item() == pytest.approx(w * base[name].item(), rel=1e-5)


def _flatten(per_level, dim):
    """(N, A*dim, H, W) per level -> (N, sum of H*W*A, dim), anchors ordered (level, h, w, a)."""
    out = []
    for x in per_level:
        n, _, h, w = x.shape
        out.append(x.view(n, -1, dim, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, dim))
    return torch.cat(out, dim=1)


def _spread_confidence(model, std=150.0):
    """Confidence logits spread over a wide range (p from ~0.2 to ~0.9 on the positives) instead of
    the init's ~0 (every p ~ 0.5); the untrained towers' features are tiny, hence the large std."""
    with torch.no_grad():
        model.head.conf_pred.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(3))
    return model


def _reference_terms(model, inputs=None):
    """The model's training losses, and, computed without RetinaNetConf's code, what they are made of.

    From the head's raw outputs: flatten them in detectron2's anchor order, match anchors with
    detectron2's Matcher (0.4 / 0.5, low-quality matches), decode the positives' deltas and take
    pairwise_iou with their matched boxes. Returns (losses, storage scalars, dict of per-positive
    confidence logits, IoU targets, class logits at the ground-truth class, negatives' logits).
    """
    inputs = inputs or make_inputs()
    model.train()
    images = model.preprocess_image(inputs)
    feats = model.backbone(images.tensor)
    features = [feats[f] for f in model.head_in_features]
    predictions = model.head(features)
    anchors = Boxes.cat(model.anchor_generator(features)).tensor
    logits = _flatten(predictions[0], NUM_CLASSES)
    deltas = _flatten(predictions[1], 4)
    conf = _flatten(predictions[2], 1).squeeze(2)
    matcher = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
    ref = {"conf": [], "iou": [], "cls": [], "neg": []}
    for n, x in enumerate(inputs):
        gt = x["instances"]
        idx, label = matcher(pairwise_iou(gt.gt_boxes, Boxes(anchors)))
        pos = label == 1
        decoded = model.box2box_transform.apply_deltas(deltas[n][pos], anchors[pos])
        ref["iou"].append(pairwise_iou(Boxes(decoded), Boxes(gt.gt_boxes.tensor[idx[pos]])).diagonal())
        ref["conf"].append(conf[n][pos])
        ref["cls"].append(logits[n][pos].gather(1, gt.gt_classes[idx[pos]].unsqueeze(1)).squeeze(1))
        ref["neg"].append(conf[n][label == 0])
    ref = {k: torch.cat(v).detach() for k, v in ref.items()}
    with EventStorage() as storage:
        losses = model.forward_training(images, features, predictions, [x["instances"] for x in inputs])
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    return losses, scalars, ref


def _bce(p, y):
    return -(y * p.log() + (1 - y) * (1 - p).log())


def test_loss_conf_is_bce_sum_over_num_pos():
    """Eq. 9 on the seeded two-image case: loss_conf = sum over positives of BCE(sigmoid(logit), IoU)
    / N_pos, N_pos counted over the whole batch, against the reference computation above."""
    losses, _, ref = _reference_terms(_spread_confidence(build_model()))
    n_pos = len(ref["iou"])
    assert n_pos > 20
    p = ref["conf"].sigmoid()
    assert p.min() < 0.3 and p.max() > 0.7  # the spread makes a wrong pairing visible
    assert 0.2 < ref["iou"].min() and ref["iou"].max() < 1.0
    expected = _bce(p, ref["iou"]).sum() / n_pos
    assert losses["loss_conf"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_conf_by_hand_with_constant_confidence():
    """Confidence conv zeroed: every p = sigmoid(0) = 1/2, and BCE(1/2, y) = -(y + 1 - y) ln(1/2) = ln 2
    whatever the IoU y, so loss_conf = N_pos ln 2 / N_pos = ln 2 = 0.693147. With the "ema"
    normaliser (detectron2's: 100 * 0.9 + N_pos * 0.1 after the first batch) it is N_pos ln 2 / that."""
    import math

    for normalizer in ("num_pos", "ema"):
        model = build_model(conf_loss_normalizer=normalizer)
        with torch.no_grad():
            model.head.conf_pred.weight.zero_()
        losses, _, ref = _reference_terms(model)
        n_pos = len(ref["iou"])
        expected = math.log(2) if normalizer == "num_pos" else n_pos * math.log(2) / (90 + 0.1 * n_pos)
        assert losses["loss_conf"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(conf_loss_type="ce"),
        dict(conf_loss_type="l1"),
        dict(conf_loss_type="l2"),
        dict(conf_loss_type="smooth_l1"),  # default beta 1.0
        dict(conf_loss_type="smooth_l1", conf_smooth_l1_beta=0.1),
        dict(conf_loss_type="gfocal"),  # default gamma 2 (Eq. 13)
        dict(conf_loss_type="gfocal", conf_gfocal_gamma=1.0),
        dict(conf_loss_type="ce_w"),  # default w 1e-4 (Table 2)
        dict(conf_loss_type="ce_w", conf_neg_weight=1e-2),
        dict(conf_loss_type="ce", conf_loss_normalizer="ema"),
        dict(conf_loss_type="l2", conf_loss_normalizer="ema"),
    ],
    ids=lambda kw: "-".join(str(v) for v in kw.values()),
)
def test_every_loss_switch_reaches_the_model(kwargs):
    """Each Table 2 loss and its hyper-parameter, and the normaliser, change loss_conf to exactly the
    formula of the module docstring (p = sigmoid(logit), y = IoU target, d = |y - p|):
    l1 d, l2 d^2, smooth_l1 0.5 d^2 / beta if d < beta else d - beta / 2, gfocal d^gamma BCE,
    ce_w BCE + w * BCE(p_neg, 0) over the negatives; / N_pos or / (90 + 0.1 N_pos) for "ema".
    Unset hyper-parameters must take the paper's values: beta 1.0, gamma 2, w 1e-4."""
    losses, _, ref = _reference_terms(_spread_confidence(build_model(**kwargs)))
    p, y = ref["conf"].sigmoid(), ref["iou"]
    d = (y - p).abs()
    loss_type = kwargs["conf_loss_type"]
    beta = kwargs.get("conf_smooth_l1_beta", 1.0)
    gamma = kwargs.get("conf_gfocal_gamma", 2.0)
    per_anchor = {
        "ce": lambda: _bce(p, y),
        "ce_w": lambda: _bce(p, y),
        "l1": lambda: d,
        "l2": lambda: d**2,
        "smooth_l1": lambda: torch.where(d < beta, 0.5 * d**2 / beta, d - beta / 2),
        "gfocal": lambda: d**gamma * _bce(p, y),
    }[loss_type]()
    total = per_anchor.sum()
    if loss_type == "ce_w":
        assert len(ref["neg"]) > 1000
        w = kwargs.get("conf_neg_weight", 1e-4)
        total = total + w * _bce(ref["neg"].sigmoid(), 0.0).sum()
    if beta == 0.1:  # both branches of smooth L1 are exercised
        assert (d < beta).any() and (d >= beta).any()
    n_pos = len(y)
    normalizer = 90 + 0.1 * n_pos if kwargs.get("conf_loss_normalizer") == "ema" else n_pos
    assert losses["loss_conf"].item() == pytest.approx((total / normalizer).item(), rel=1e-5)


def test_ce_w_on_a_one_image_batch():
    """CE^w with a batch of one image: (sum of positives' BCE + w * sum of negatives' BCE(p, 0)) / N_pos."""
    losses, _, ref = _reference_terms(
        _spread_confidence(build_model(conf_loss_type="ce_w", conf_neg_weight=1e-2)), make_inputs()[:1]
    )
    p, y = ref["conf"].sigmoid(), ref["iou"]
    expected = (_bce(p, y).sum() + 1e-2 * _bce(ref["neg"].sigmoid(), 0.0).sum()) / len(y)
    assert losses["loss_conf"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_signals_are_the_positives_statistics():
    """objconf/* scalars: means of sigmoid(conf), of the IoU target and of sigmoid(class logit at the
    ground-truth class) over the positives, and the Pearson correlations of each score with the IoU."""
    _, scalars, ref = _reference_terms(_spread_confidence(build_model()))
    conf, iou, cls = ref["conf"].sigmoid(), ref["iou"], ref["cls"].sigmoid()
    assert scalars["objconf/mean_conf_pos"] == pytest.approx(conf.mean().item(), rel=1e-5)
    assert scalars["objconf/mean_iou_target"] == pytest.approx(iou.mean().item(), rel=1e-5)
    assert scalars["objconf/mean_cls_pos"] == pytest.approx(cls.mean().item(), rel=1e-5)
    corr_conf = np.corrcoef(conf.numpy(), iou.numpy())[0, 1]
    corr_cls = np.corrcoef(cls.numpy(), iou.numpy())[0, 1]
    assert abs(corr_conf - corr_cls) > 0.05  # the two are told apart
    assert scalars["objconf/corr_conf_iou"] == pytest.approx(corr_conf, abs=1e-4)
    assert scalars["objconf/corr_cls_iou"] == pytest.approx(corr_cls, abs=1e-4)


def test_training_signal_correlation_of_a_constant_score_is_zero():
    """A constant confidence (1/2, 1/2) has no correlation with the IoU: 0, not 0/0 = NaN."""
    model = build_model()
    with EventStorage() as storage:
        model._log_positive_statistics(
            torch.zeros(2), torch.tensor([0.5, 0.9]), torch.logit(torch.tensor([0.6, 0.2]))
        )
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    assert scalars["objconf/corr_conf_iou"] == 0.0
    assert scalars["objconf/corr_cls_iou"] == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.parametrize("num_pos", [1, 2])
def test_training_signals_need_two_points_for_a_correlation(num_pos):
    """Pearson of (.2, .6) with (.5, .9) is 1 (two points lie on a line); one point has none."""
    model = build_model()
    conf = torch.logit(torch.tensor([0.2, 0.6]))[:num_pos]
    iou = torch.tensor([0.5, 0.9])[:num_pos]
    cls = torch.logit(torch.tensor([0.6, 0.2]))[:num_pos]
    with EventStorage() as storage:
        model._log_positive_statistics(conf, iou, cls)
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    assert scalars["objconf/mean_conf_pos"] == pytest.approx([0.2, 0.4][num_pos - 1])
    assert scalars["objconf/mean_iou_target"] == pytest.approx([0.5, 0.7][num_pos - 1])
    assert scalars["objconf/mean_cls_pos"] == pytest.approx([0.6, 0.4][num_pos - 1])
    if num_pos == 1:
        assert "objconf/corr_conf_iou" not in scalars and "objconf/corr_cls_iou" not in scalars
    else:
        assert scalars["objconf/corr_conf_iou"] == pytest.approx(1.0, abs=1e-5)
        assert scalars["objconf/corr_cls_iou"] == pytest.approx(-1.0, abs=1e-5)


# ----------------------------------------------------------------------------- inference fusion


def expected_fused(cls_logits, conf_logits, fusion, alpha, conf_thresh):
    """The Table 4 / Eq. 11 scores written out: s = sigmoid(class logit), c = sigmoid(confidence)."""
    s, c = cls_logits.sigmoid(), conf_logits.sigmoid()
    fused = {"product": c**alpha * s ** (1 - alpha), "cls*conf": s * c, "cls": s}[fusion]
    return fused if conf_thresh is None else fused * (c > conf_thresh)


@pytest.mark.parametrize(
    "fusion, alpha, conf_thresh",
    [
        ("product", 0.4, None),
        ("product", 0.2, None),
        ("product", 0.7, 0.5),
        ("cls*conf", 0.4, None),
        ("cls*conf", 0.4, 0.5),
        ("cls", 0.4, 0.5),
        ("cls", 0.4, None),
    ],
)
def test_fusion_applied_on_every_level_before_threshold(fusion, alpha, conf_thresh, monkeypatch):
    """Spy on the per-level decoding (score threshold + top-k): every level, including p7 with 36
    anchors (the authors' code fused only levels with > 1000 anchors), receives the fused scores of
    the configured method, alpha and filter."""
    model = _spread_confidence(
        build_model(score_fusion=fusion, fusion_alpha=alpha, conf_filter_thresh=conf_thresh)
    )
    model.eval()
    model.test_score_thresh = 0.005  # untrained: class scores start at the 0.01 prior
    inputs = make_inputs()[:1]
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        predictions = model.head(features)
        logits = [_flatten([x], NUM_CLASSES)[0] for x in predictions[0]]
        conf = [_flatten([x], 1)[0] for x in predictions[2]]
        expected = [
            expected_fused(x, c, fusion, alpha, conf_thresh) for x, c in zip(logits, conf)
        ]
        if conf_thresh is not None:  # the filter drops some anchors and keeps others
            assert 0 < sum(int((c.sigmoid() > conf_thresh).sum()) for c in conf) < sum(map(len, conf))

        seen = []
        original = model._decode_per_level_predictions

        def spy(anchors, pred_scores, *args, **kwargs):
            seen.append(pred_scores.clone())
            return original(anchors, pred_scores, *args, **kwargs)

        monkeypatch.setattr(model, "_decode_per_level_predictions", spy)
        detections = model.forward_inference(images, features, predictions)[0]
    assert len(seen) == len(STRIDES)
    assert min(len(s) for s in seen) == 36 < 1000
    for got, want in zip(seen, expected):
        assert torch.allclose(got, want, atol=1e-6)
    assert len(detections) > 0
    assert torch.isin(detections.scores, torch.cat([x.flatten() for x in expected])).all()
    if fusion != "cls" or conf_thresh is not None:
        assert not torch.allclose(seen[-1], logits[-1].sigmoid(), atol=1e-3)


# ----------------------------------------------------------------------------- misalignment analysis


def test_misalignment_analysis_on_tiny_model():
    from d2imbalance.analysis.misalignment import collect_from_model

    model = build_model()
    model.eval()
    model.test_score_thresh = (
        0.02  # untrained: fused scores start near 0.5**0.4 * 0.01**0.6 = 0.048
    )
    inp = make_inputs()[0]
    result = collect_from_model(model, inp, name="img", candidates="detectron2")
    counts = result.counts()
    # Positive anchors: detectron2's pairwise IoU of all anchors with the ground truth, > 0.5.
    with torch.no_grad():
        features = model.backbone(model.preprocess_image([inp]).tensor)
        anchors = Boxes.cat(model.anchor_generator([features[f] for f in model.head_in_features]))
    expected_pos = int(
        (pairwise_iou(anchors, inp["instances"].gt_boxes).max(dim=1).values > 0.5).sum()
    )
    assert counts[("Positive_NUM", "iou>0.5")] == expected_pos > 0
    # The candidates are what the model's own inference keeps (fused score > 0.02, top 1000 per level) ...
    assert len(result.before.fused) == len(result.before.cls) == len(result.before.iou) > 0
    assert (result.before.fused > 0.02).all() and 0 < len(result.after.fused) < len(
        result.before.fused
    )
    assert counts[("Before NMS", "iou>0.5")] == int((result.before.iou > 0.5).sum())
    # ... and NMS keeps the same boxes as the model's inference, before its 100-detection cap.
    with torch.no_grad():
        images = model.preprocess_image([inp])
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        model.max_detections_per_image = 10**6
        detections = model.forward_inference(images, features, model.head(features))[0]
    assert len(detections) == len(result.after.cls)
    assert torch.allclose(
        detections.scores.sort().values,
        torch.from_numpy(result.after.fused).sort().values,
        atol=1e-5,
    )


def test_misalignment_before_nms_rules_on_tiny_model():
    """Untrained, every fused score is ~0.048 > 0.02, so every (anchor, class) pair passes the
    threshold. The 200x250 image has 25x31, 13x16, 7x8, 4x4 and 2x2 positions, x 9 anchors:
    6975, 1872, 504, 144, 36 anchors per level, K = 3. The paper's rule keeps min(anchors, 1000) x 3
    pairs per level: 3000 + 3000 + 1512 + 432 + 108 = 8052; detectron2's min(3 x anchors, 1000):
    1000 + 1000 + 1000 + 432 + 108 = 3540. Both default to the paper's rule in collect_from_model."""
    from d2imbalance.analysis.misalignment import collect_from_model

    model = build_model()
    model.eval()
    model.test_score_thresh = 0.02
    inp = make_inputs()[0]
    with torch.no_grad():
        features = model.backbone(model.preprocess_image([inp]).tensor)
        anchors = model.anchor_generator([features[f] for f in model.head_in_features])
    assert [len(a) for a in anchors] == [6975, 1872, 504, 144, 36]
    paper = collect_from_model(model, inp)
    d2 = collect_from_model(model, inp, candidates="detectron2")
    assert paper.extra["candidates"] == "paper"
    assert paper.before.fused.min() > 0.02
    assert len(paper.before.fused) == 8052
    assert len(d2.before.fused) == 3540


def build_plain_retinanet(head_cls=None):
    """detectron2's RetinaNet on the same tiny parts (a RetinaNetConfHead gives it a confidence it
    cannot fuse)."""
    from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead

    conf_model = build_model()
    head = (head_cls or RetinaNetHead)(
        input_shape=[ShapeSpec(channels=CHANNELS)] * 5,
        num_classes=NUM_CLASSES,
        conv_dims=[CHANNELS, CHANNELS],
        num_anchors=9,
    )
    return RetinaNet(
        backbone=conf_model.backbone,
        head=head,
        head_in_features=conf_model.head_in_features,
        anchor_generator=conf_model.anchor_generator,
        box2box_transform=conf_model.box2box_transform,
        anchor_matcher=conf_model.anchor_matcher,
        num_classes=NUM_CLASSES,
        pixel_mean=[103.53, 116.28, 123.675],
        pixel_std=[57.375, 57.12, 58.395],
    ).eval()


def test_misalignment_on_plain_retinanet_uses_the_models_inference_parameters():
    """Class prior 0.01 > threshold 0.005: every pair is a candidate. With top-k 500 (the model's,
    not the default 1000), per level (6975, 1872, 504, 144, 36 anchors, K = 3):
    paper min(R, 500) x 3 = 1500 + 1500 + 1500 + 432 + 108 = 5040; detectron2 min(3R, 500) = 500 +
    500 + 500 + 432 + 108 = 2040. After NMS (the model's 0.6, not the default 0.5) the boxes are the
    model's own detections."""
    from d2imbalance.analysis.misalignment import collect_from_model

    model = build_plain_retinanet()
    model.test_score_thresh, model.test_topk_candidates, model.test_nms_thresh = 0.005, 500, 0.6
    inp = make_inputs()[0]
    paper = collect_from_model(model, inp, name="plain")
    d2 = collect_from_model(model, inp, candidates="detectron2")
    assert paper.name == "plain" and paper.before.fused is None
    assert not any(cond.startswith("fused") for _, cond in paper.counts())
    assert len(paper.before.cls) == 5040 and len(d2.before.cls) == 2040
    assert paper.extra["num_gt"] == 2
    with torch.no_grad():
        images = model.preprocess_image([inp])
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        model.max_detections_per_image = 10**6
        detections = model.forward_inference(images, features, model.head(features))[0]
    assert len(detections) == len(d2.after.cls)
    assert torch.allclose(
        detections.scores.sort().values, torch.from_numpy(d2.after.cls).sort().values, atol=1e-6
    )


def test_misalignment_keeps_class_score_and_fused_score_apart():
    """cls*conf fusion with the confidence conv zeroed: conf = 1/2 everywhere, so every candidate's
    fused score is exactly half its class score (the class score is not overwritten by the fusion)."""
    from d2imbalance.analysis.misalignment import collect_from_model

    model = build_model(score_fusion="cls*conf")
    model.eval()
    model.test_score_thresh = 0.002
    with torch.no_grad():
        model.head.conf_pred.weight.zero_()
    result = collect_from_model(model, make_inputs()[0])
    assert len(result.before.cls) > 100
    assert np.allclose(result.before.fused, 0.5 * result.before.cls, rtol=1e-5)


def test_misalignment_rejects_what_it_cannot_analyse():
    from d2imbalance.analysis.misalignment import collect_from_model

    inp = make_inputs()[0]
    with pytest.raises(ValueError, match="RetinaNet-style model.*anchor_generator"):
        collect_from_model(nn.Linear(1, 1), inp)
    with pytest.raises(ValueError, match="no 'instances'.*is_train=True"):
        collect_from_model(build_model().eval(), {"image": inp["image"]})
    with pytest.raises(ValueError, match="no fuse"):
        collect_from_model(build_plain_retinanet(RetinaNetConfHead), inp)
