"""SSD (d2imbalance.modeling): default boxes, box coder, matching, hard negative mining, loss, inference,
the VGG backbone and its torchvision converter, and the SSD configs.

Pure-torch tests (ssd_ops) carry no marker; tests that need detectron2 are marked.
"""
import math
import subprocess
import sys

import pytest
import torch

from d2imbalance.modeling.ssd_ops import (
    hard_negative_mask,
    match_priors,
    multibox_loss,
    select_per_class,
    ssd_cell_anchors,
    ssd_prior_sizes,
)

detectron2 = pytest.mark.detectron2
LN3 = math.log(3.0)

SSD300_ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
SSD512_ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]


# ----------------------------------------------------------------------------- default-box sizes and shapes
def test_prior_sizes_are_the_caffe_recipes():
    """ssd_pascal.py: step = floor((90 - 20) / 4) = 17, ratios 20, 37, 54, 71, 88 % of 300, conv4_3 10/20 %."""
    assert ssd_prior_sizes(300, 6, 20, 90, (10, 20)) == (
        [30.0, 60.0, 111.0, 162.0, 213.0, 264.0],
        [60.0, 111.0, 162.0, 213.0, 264.0, 315.0],
    )
    # ssd_coco.py: step floor(75 / 4) = 18, ratios 15, 33, 51, 69, 87; conv4_3 7 / 15 %.
    assert ssd_prior_sizes(300, 6, 15, 90, (7, 15)) == (
        [21.0, 45.0, 99.0, 153.0, 207.0, 261.0],
        [45.0, 99.0, 153.0, 207.0, 261.0, 315.0],
    )
    # ssd_pascal_512.py: step floor(75 / 5) = 15, ratios 15, 30, ..., 90 % of 512; conv4_3 7 / 15 %.
    lo, hi = ssd_prior_sizes(512, 7, 15, 90, (7, 15))
    assert lo == pytest.approx([35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8])
    assert hi == pytest.approx([76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6])
    # SSD512 COCO: step floor(80 / 5) = 16, ratios 10, 26, 42, 58, 74, 90; conv4_3 4 / 10 %.
    lo, hi = ssd_prior_sizes(512, 7, 10, 90, (4, 10))
    assert lo == pytest.approx([20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8])
    assert hi == pytest.approx([51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72])
    # 3 maps: step 70, ratios 20 and 90.
    assert ssd_prior_sizes(300, 3, 20, 90, (10, 20)) == ([30.0, 60.0, 270.0], [60.0, 270.0, 480.0])
    with pytest.raises(ValueError, match="at least 3 feature maps"):
        ssd_prior_sizes(300, 2, 20, 90, (10, 20))


def test_cell_anchors_square_extra_square_and_ratio_boxes_in_caffe_order():
    """s = 30, s' = 60: 30x30, sqrt(1800) = 42.43 square, 30*sqrt2 x 30/sqrt2 = 42.43 x 21.21 and its transpose."""
    r2 = math.sqrt(2.0)
    extra = math.sqrt(30.0 * 60.0)
    wh = [(30, 30), (extra, extra), (30 * r2, 30 / r2), (30 / r2, 30 * r2)]
    expected = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2] for w, h in wh])
    assert torch.allclose(ssd_cell_anchors(30.0, 60.0, [2]), expected)
    six = ssd_cell_anchors(60.0, 111.0, [2, 3])
    assert six.shape == (6, 4)
    widths, heights = six[:, 2] - six[:, 0], six[:, 3] - six[:, 1]
    assert torch.allclose(widths / heights, torch.tensor([1.0, 1.0, 2.0, 0.5, 3.0, 1 / 3.0]))
    assert torch.allclose((widths * heights)[2:], torch.full((4,), 3600.0))  # ratio boxes keep area s^2
    assert ssd_cell_anchors(30.0, 30.0, []).tolist() == [[-15.0, -15.0, 15.0, 15.0]] * 2
    expected = [[-0.25, -0.25, 0.25, 0.25]] * 2 + [[-r / 4, -1 / (4 * r), r / 4, 1 / (4 * r)] for r in (0.5**0.5, 2**0.5)]
    assert torch.allclose(ssd_cell_anchors(0.5, 0.5, [0.5]), torch.tensor(expected))  # sub-pixel, ratio < 1: fine
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert ssd_cell_anchors(30.0, 60.0, [2]).dtype == torch.float32
    finally:
        torch.set_default_dtype(default)
    with pytest.raises(ValueError, match="min_size <= max_size"):
        ssd_cell_anchors(60.0, 30.0, [2])
    with pytest.raises(ValueError, match="min_size <= max_size"):
        ssd_cell_anchors(0.0, 30.0, [2])
    with pytest.raises(ValueError, match="must be positive"):
        ssd_cell_anchors(30.0, 60.0, [0])


def test_cell_anchors_without_a_max_size_have_no_extra_square():
    """RefineDet's anchors: 32 px, ratios 1, 2, 1/2 -> 32x32, 45.25x22.63, 22.63x45.25 (3 boxes)."""
    r2 = math.sqrt(2.0)
    wh = [(32, 32), (32 * r2, 32 / r2), (32 / r2, 32 * r2)]
    expected = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2] for w, h in wh])
    assert torch.allclose(ssd_cell_anchors(32.0, None, [2]), expected)
    with pytest.raises(ValueError, match="min_size <= max_size"):
        ssd_cell_anchors(-1.0, None, [2])


# ----------------------------------------------------------------------------- matching
def test_match_threshold_is_inclusive_and_the_argmax_ground_truth_wins():
    """Prior 0: IoU 0.5 with gt 0 -> positive; prior 1: 0.49 -> background; prior 2: 0.7 vs 0.6 -> gt 0;
    prior 3: 0.55 vs 0.8 -> gt 1. Best priors: gt 0 -> prior 2, gt 1 -> prior 3 (already theirs)."""
    iou = torch.tensor([[0.5, 0.49, 0.7, 0.55], [0.1, 0.2, 0.6, 0.8]])
    assert match_priors(iou).tolist() == [0, -1, 0, 1]
    assert match_priors(iou, threshold=0.75).tolist() == [-1, -1, 0, 1]  # only the forced best priors


def test_each_ground_truths_best_prior_is_forced_and_owned_by_it():
    """gt 1 (small) overlaps nothing >= 0.5; its best prior (1, IoU 0.3) overlaps gt 0 more (0.6), but
    the forced match gives prior 1 to gt 1. Prior 0 (0.9) stays gt 0's."""
    iou = torch.tensor([[0.9, 0.6, 0.0], [0.1, 0.3, 0.2]])
    assert match_priors(iou).tolist() == [0, 1, -1]
    assert match_priors(iou.flip(0)).tolist() == [1, 0, -1]  # the same with the small object first


def test_shared_best_prior_goes_to_the_last_ground_truth_and_ties_take_the_first_prior():
    """Both gts' best prior is 1: the last (gt 1) owns it, as mmdetection's and ssd.pytorch's loops
    leave it; gt 0 keeps prior 0 (>= 0.5). gt 2 ties on priors 2 and 3 (0.4): the first is forced."""
    iou = torch.tensor([[0.55, 0.9, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.4, 0.4]])
    assert match_priors(iou).tolist() == [0, 1, 2, -1]


def test_no_ground_truth_means_all_background():
    matched = match_priors(torch.zeros(0, 5))
    assert matched.tolist() == [-1] * 5 and matched.dtype == torch.int64


# ----------------------------------------------------------------------------- hard negative mining
def test_hard_negative_mining_takes_three_per_positive_hardest_first_per_image():
    """Image 0: 1 positive (prior 0, the largest loss, never mined) -> the 3 largest negative losses
    (priors 5, 2, 6). Image 1: no positive -> nothing, though its losses are the largest of the batch.
    Image 2: 3 positives want 9 negatives but it has 5 -> all 5."""
    losses = torch.tensor(
        [
            [9.0, 0.1, 5.0, 0.3, 0.2, 7.0, 4.0, 1.0],
            [50.0, 60.0, 70.0, 80.0, 90.0, 99.0, 98.0, 97.0],
            [1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0],
        ]
    )
    pos = torch.zeros(3, 8, dtype=torch.bool)
    pos[0, 0] = True
    pos[2, 3:6] = True
    mask = hard_negative_mask(losses, pos)
    assert mask[0].nonzero().flatten().tolist() == [2, 5, 6]
    assert not mask[1].any()
    assert mask[2].nonzero().flatten().tolist() == [0, 1, 2, 6, 7]
    assert not (mask & pos).any()


def test_hard_negative_quota_is_the_floor_of_ratio_times_positives():
    """3 positives at ratio 1.5 -> floor(4.5) = 4 negatives, the 4 largest (9, 8, 7, 6)."""
    losses = torch.tensor([[0.0, 0.0, 0.0, 9.0, 1.0, 8.0, 2.0, 7.0, 6.0, 3.0]])
    pos = torch.tensor([[True, True, True] + [False] * 7])
    assert hard_negative_mask(losses, pos, 1.5).nonzero()[:, 1].tolist() == [3, 5, 7, 8]
    assert hard_negative_mask(losses, pos, 1.0).nonzero()[:, 1].tolist() == [3, 5, 7]
    assert not hard_negative_mask(losses, torch.zeros_like(pos)).any()


def test_mining_partially_sorts_the_batch_once(monkeypatch):
    """One topk call over the whole (N, R) batch, no full sort: the issue's "sort every prior at most once"."""
    calls = []
    for name in ("topk", "sort", "argsort"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _o=original, _n=name, **k: calls.append((_n, self.shape)) or _o(self, *a, **k),
        )
    losses = torch.rand(4, 100)
    pos = torch.rand(4, 100) > 0.9
    hard_negative_mask(losses, pos)
    assert calls == [("topk", (4, 100))]


# ----------------------------------------------------------------------------- the multibox loss
def _loss_case():
    """Image 0: prior 0 positive (class 0), logits 0 -> CE ln 3. Negatives (background = class 2) with
    logits (a, 0, 0): CE = ln(e^a + 2); a = ln 30, ln 14, ln 6, ln 2, 0 -> ln 32, ln 16, ln 8, ln 4, ln 3.
    Image 1: no object; its (large) negative losses must not be mined."""
    a = torch.tensor([math.log(30), math.log(14), math.log(6), math.log(2), 0.0])
    logits = torch.zeros(2, 6, 3)
    logits[0, 1:, 0] = a
    logits[1, :, 0] = 10.0
    labels = torch.full((2, 6), 2, dtype=torch.long)
    labels[0, 0] = 0
    pred = torch.zeros(2, 6, 4)
    pred[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.1])
    gt = torch.full((2, 6, 4), float("inf"))  # only positives' targets are read
    gt[0, 0] = 0.0
    return logits, labels, pred, gt


def test_multibox_loss_by_hand():
    """loss_cls = ln 3 + ln 32 + ln 16 + ln 8 (1 positive, its 3 hardest negatives), / 1 positive.
    loss_box = smooth-L1(beta 1) of (0.5, -2, 0, 0.1): 0.125 + 1.5 + 0 + 0.005 = 1.63."""
    logits, labels, pred, gt = _loss_case()
    loss_cls, loss_box, num_pos, num_neg = multibox_loss(logits, labels, pred, gt)
    assert loss_cls.item() == pytest.approx(math.log(3 * 32 * 16 * 8), rel=1e-5)
    assert loss_box.item() == pytest.approx(1.63, rel=1e-5)
    assert (num_pos, num_neg) == (1, 3)


def test_multibox_loss_switches_change_it_by_the_expected_amount():
    logits, labels, pred, gt = _loss_case()
    # ratio 1: only ln 32 is mined.
    assert multibox_loss(logits, labels, pred, gt, neg_pos_ratio=1.0)[0].item() == pytest.approx(
        math.log(3 * 32), rel=1e-5
    )
    # beta 0 is L1: 0.5 + 2 + 0 + 0.1.
    assert multibox_loss(logits, labels, pred, gt, smooth_l1_beta=0.0)[1].item() == pytest.approx(2.6, rel=1e-5)
    # Weights multiply after mining: x2 on the positive, x10 on an unmined negative (prior 5, ln 3).
    w = torch.ones(2, 6)
    w[0, 0] = 2.0
    w[0, 5] = 10.0
    loss_cls, _, _, num_neg = multibox_loss(logits, labels, pred, gt, cls_weights=w)
    assert loss_cls.item() == pytest.approx(2 * LN3 + math.log(32 * 16 * 8), rel=1e-5) and num_neg == 3
    bw = torch.ones(2, 6)
    bw[0, 0] = 3.0
    assert multibox_loss(logits, labels, pred, gt, box_weights=bw)[1].item() == pytest.approx(3 * 1.63, rel=1e-5)


def test_multibox_loss_is_divided_by_the_batch_positives():
    """A second positive (image 1, prior 0, logits (10, 0, 0) labelled 0: CE = ln(e^10 + 2) - 10) with
    three mined negatives of CE ln(e^10 + 2) each; both losses / 2."""
    logits, labels, pred, gt = _loss_case()
    labels[1, 0] = 0
    gt[1, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # |0 - 1| -> 0.5 (smooth-L1, beta 1)
    lse = math.log(math.exp(10) + 2)
    loss_cls, loss_box, num_pos, num_neg = multibox_loss(logits, labels, pred, gt)
    expected = math.log(3 * 32 * 16 * 8) + (lse - 10) + 3 * lse
    assert loss_cls.item() == pytest.approx(expected / 2, rel=1e-5)
    assert loss_box.item() == pytest.approx((1.63 + 0.5) / 2, rel=1e-5)
    assert (num_pos, num_neg) == (2, 6)
    bw = torch.ones(2, 6)
    bw[0, 0] = 3.0  # each positive's own factor
    assert multibox_loss(logits, labels, pred, gt, box_weights=bw)[1].item() == pytest.approx((3 * 1.63 + 0.5) / 2)


def test_multibox_loss_without_positives_is_exactly_zero_with_zero_gradients():
    logits = torch.randn(2, 5, 3, requires_grad=True)
    labels = torch.full((2, 5), 2, dtype=torch.long)
    pred = torch.randn(2, 5, 4, requires_grad=True)
    loss_cls, loss_box, num_pos, num_neg = multibox_loss(logits, labels, pred, torch.zeros(2, 5, 4))
    assert loss_cls.item() == 0.0 and loss_box.item() == 0.0 and (num_pos, num_neg) == (0, 0)
    (loss_cls + loss_box).backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits)) and torch.equal(pred.grad, torch.zeros_like(pred))


def test_multibox_loss_ignore_mask_takes_priors_out_of_loss_quota_and_mining():
    """RefineDet's ODM filter: ignoring the hardest negative (prior 1, ln 32) and a second positive (prior
    5) leaves 1 positive (normaliser and quota 1 x 3) and mines ln 16, ln 8, ln 4 instead; ignored priors
    get no gradient."""
    logits, labels, pred, gt = _loss_case()
    labels[0, 5] = 0
    pred[0, 5] = 7.0
    gt[0, 5] = 0.0
    ignore = torch.zeros(2, 6, dtype=torch.bool)
    ignore[0, 1] = ignore[0, 5] = True
    logits.requires_grad_(True)
    loss_cls, loss_box, num_pos, num_neg = multibox_loss(logits, labels, pred, gt, ignore=ignore)
    assert loss_cls.item() == pytest.approx(LN3 + math.log(16 * 8 * 4), rel=1e-5)
    assert loss_box.item() == pytest.approx(1.63, rel=1e-5)
    assert (num_pos, num_neg) == (1, 3)
    loss_cls.backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert touched[0].tolist() == [True, False, True, True, True, False]
    # Without the mask prior 5 is a positive: 2 positives, quota 6 (all 4 negatives mined).
    assert multibox_loss(logits, labels, pred, gt)[2:] == (2, 4)


def test_hard_negative_mask_mines_only_eligible_priors():
    losses = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])
    pos = torch.tensor([[True, False, False, False, False, False]])
    eligible = torch.tensor([[False, False, True, True, False, True]])
    assert hard_negative_mask(losses, pos, 3.0, eligible).tolist() == [[False, False, True, True, False, True]]
    assert hard_negative_mask(losses, pos, 2.0, eligible).tolist() == [[False, False, True, True, False, False]]
    assert hard_negative_mask(losses, pos, 3.0).tolist() == [[False, True, True, True, False, False]]


def test_mining_is_not_differentiated_and_positives_get_gradient():
    logits, labels, pred, gt = _loss_case()
    logits.requires_grad_(True)
    multibox_loss(logits, labels, pred, gt)[0].backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert touched[0].tolist() == [True, True, True, True, False, False] and not touched[1].any()


# ----------------------------------------------------------------------------- candidate selection
def test_select_per_class_keeps_the_top_k_per_class_above_the_threshold():
    """Class 0 scores (0.9, 0.5, 0.01, 0.3): top 2 = priors 0, 1. Class 1 (0.2, 0.011, 0.01, 0.0): top 2 =
    priors 0, 1, both > 0.01. 0.01 itself is not > 0.01."""
    scores = torch.tensor([[0.9, 0.2], [0.5, 0.011], [0.01, 0.01], [0.3, 0.0]])
    priors, classes, kept = select_per_class(scores, 0.01, 2)
    assert sorted(zip(priors.tolist(), classes.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(kept.tolist()) == pytest.approx(sorted([0.9, 0.5, 0.2, 0.011]))
    priors, classes, _ = select_per_class(scores, 0.25, 400)  # k capped at the 4 priors
    assert sorted(zip(priors.tolist(), classes.tolist())) == [(0, 0), (1, 0), (3, 0)]
    assert len(select_per_class(torch.full((450, 1), 0.02))[0]) == 400  # default: 400 per class
    assert select_per_class(torch.tensor([[0.01], [0.02]]))[0].tolist() == [1]  # default: > 0.01


def test_ssd_ops_import_without_detectron2():
    code = (
        "import sys; sys.modules['detectron2'] = None\n"
        "from d2imbalance.modeling import multibox_loss, match_priors\n"
        "import d2imbalance.modeling as m; assert not hasattr(m, 'SSD'); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# ============================================================================= detectron2 parts
def _tiny_ssd(num_classes=2, input_size=300, cls=None, backbone_cls=None, **kwargs):
    """SSD300 (or 512) geometry on a 1/16-width VGG, the VOC recipe's default boxes; ``cls``: an SSD
    subclass to build instead (same seeded weights); ``backbone_cls``: an SSDVGG subclass (FSSDVGG)."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import SSD, SSDVGG, SSDAnchorGenerator, SSDHead

    torch.manual_seed(0)
    backbone = (backbone_cls or SSDVGG)(input_size=input_size, width_ratio=1 / 16)
    if input_size == 300:
        sizes, ratios = ssd_prior_sizes(300, 6, 20, 90, (10, 20)), SSD300_ASPECT_RATIOS
    else:
        sizes, ratios = ssd_prior_sizes(512, 7, 15, 90, (7, 15)), SSD512_ASPECT_RATIOS
    shapes = backbone.output_shape()
    anchors = SSDAnchorGenerator(
        min_sizes=sizes[0], max_sizes=sizes[1], aspect_ratios=ratios, strides=[s.stride for s in shapes.values()]
    )
    head = SSDHead(
        input_shape=[ShapeSpec(channels=s.channels) for s in shapes.values()],
        num_classes=num_classes,
        num_anchors=[2 + 2 * len(r) for r in ratios],
    )
    return (cls or SSD)(
        backbone=backbone,
        head=head,
        anchor_generator=anchors,
        num_classes=num_classes,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        **kwargs,
    )


def _instances(boxes, classes, size=(300, 300)):
    from detectron2.structures import Boxes, Instances

    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    return inst


@detectron2
@pytest.mark.parametrize(
    "input_size, maps, total",
    [
        # 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4 = 5776 + 2166 + 600 + 150 + 36 + 4
        (300, [38, 19, 10, 5, 3, 1], 8732),
        # 64^2*4 + 32^2*6 + 16^2*6 + 8^2*6 + 4^2*6 + 2^2*4 + 1*4 = 16384 + 6144 + 1536 + 384 + 96 + 16 + 4
        (512, [64, 32, 16, 8, 4, 2, 1], 24564),
    ],
)
def test_prior_counts_and_map_sizes(input_size, maps, total):
    model = _tiny_ssd(input_size=input_size)
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, input_size, input_size))
    assert [f.shape[-1] for f in features.values()] == maps and [f.shape[-2] for f in features.values()] == maps
    anchors = model.anchor_generator(list(features.values()))
    assert sum(len(a) for a in anchors) == total


@detectron2
def test_prior_positions_steps_and_clipping():
    """conv4_3 cell (0, 0): centre 0.5 * 8 = 4, 30 px square -> (-11, -11, 19, 19). The 3x3 map of SSD300
    (step 100) has centres 50, 150, 250; the 1x1 map (step 300) is centred at 150 with a 264 px square.
    clip_size=300 clips to the image."""
    from d2imbalance.modeling import SSDAnchorGenerator

    sizes = ssd_prior_sizes(300, 6, 20, 90, (10, 20))
    steps = [8, 16, 32, 64, 100, 300]
    kwargs = dict(min_sizes=sizes[0], max_sizes=sizes[1], aspect_ratios=SSD300_ASPECT_RATIOS, strides=steps)
    features = [torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]
    anchors = SSDAnchorGenerator(**kwargs)(features)
    assert anchors[0].tensor[0].tolist() == [-11.0, -11.0, 19.0, 19.0]
    centres = anchors[4].get_centers()[::4]  # one per location of the 3x3 map
    assert centres[:3, 0].tolist() == [50.0, 150.0, 250.0] and centres[::3, 1].tolist() == [50.0, 150.0, 250.0]
    assert anchors[5].tensor[0].tolist() == [18.0, 18.0, 282.0, 282.0]
    clipped = SSDAnchorGenerator(**kwargs, clip_size=300)(features)
    assert clipped[0].tensor[0].tolist() == [0.0, 0.0, 19.0, 19.0]
    assert clipped[5].tensor.min() >= 0 and clipped[5].tensor.max() <= 300
    assert anchors[5].tensor.max() > 300  # unclipped by default, as the Caffe recipes
    with pytest.raises(ValueError, match="one entry per feature map"):
        SSDAnchorGenerator(**{**kwargs, "strides": steps[:5]})
    corner = SSDAnchorGenerator(**kwargs, offset=0.0)(features)  # centres at j * step
    assert corner[0].tensor[0].tolist() == [-15.0, -15.0, 15.0, 15.0]


@detectron2
def test_box2box_weights_are_the_ssd_variances():
    """Prior (40, 30, 60, 70): centre (50, 50), 20 x 40. Ground truth (45, 40, 65, 60): centre (55, 50),
    20 x 20. SSD: ((55 - 50) / 20 / 0.1, 0 / 40 / 0.1, ln(20/20) / 0.2, ln(20/40) / 0.2) = (2.5, 0, 0, -3.4657)."""
    from detectron2.modeling.box_regression import Box2BoxTransform

    from d2imbalance.modeling import SSD_BOX_WEIGHTS

    coder = Box2BoxTransform(weights=SSD_BOX_WEIGHTS)
    prior = torch.tensor([[40.0, 30.0, 60.0, 70.0]])
    gt = torch.tensor([[45.0, 40.0, 65.0, 60.0]])
    deltas = coder.get_deltas(prior, gt)
    assert torch.allclose(deltas, torch.tensor([[2.5, 0.0, 0.0, math.log(0.5) / 0.2]]), atol=1e-6)
    assert torch.allclose(coder.apply_deltas(deltas, prior), gt, atol=1e-4)


@detectron2
def test_forced_match_gives_the_small_object_a_prior_that_detectron2s_matcher_gives_away():
    """Priors A0 (0,0,10,10), A1 (0,0,20,20), A2 (0,0,12,12); objects b (0,0,12,12), class 0, and small
    s (0,0,6,6), class 1. IoU(s) = 0.36, 0.09, 0.25 -> s's best prior is A0, which b overlaps 100/144 = 0.69.
    detectron2's Matcher(0.5) keeps A0 for its argmax b with or without low-quality matches: s has no
    positive prior. SSD forces A0 to s; A2 (IoU 1) stays b's; A1 (0.36 at best) is background."""
    from detectron2.modeling.matcher import Matcher
    from detectron2.structures import Boxes, pairwise_iou

    model = _tiny_ssd(num_classes=2)
    anchors = [Boxes(torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 12, 12]]))]
    inst = _instances([[0, 0, 12, 12], [0, 0, 6, 6]], [0, 1])
    iou = pairwise_iou(inst.gt_boxes, anchors[0])
    for low_quality in (False, True):
        matched, labels = Matcher([0.5], [0, 1], allow_low_quality_matches=low_quality)(iou)
        assert not ((matched == 1) & (labels == 1)).any()
    gt_labels, gt_boxes, matched_idxs = model.label_anchors(anchors, [inst])
    assert matched_idxs[0].tolist() == [1, -1, 0]
    assert gt_labels[0].tolist() == [1, 2, 0]  # 2 = background (K)
    assert gt_boxes[0][0].tolist() == [0, 0, 6, 6] and gt_boxes[0][2].tolist() == [0, 0, 12, 12]
    _, _, lowered = _tiny_ssd(num_classes=2, iou_threshold=0.3).label_anchors(anchors, [inst])
    assert lowered[0].tolist() == [1, 0, 0]  # A1's 0.36 with b passes 0.3
    labels, boxes, matched = model.label_anchors(anchors, [_instances([], [])])
    assert labels[0].tolist() == [2, 2, 2] and matched[0].tolist() == [-1, -1, -1] and not boxes[0].any()


def _loss_inputs():
    """One image, K = 2, four priors; object (45, 40, 65, 60) class 1 matched to prior 0 by the forced
    rule (IoU 300 / 900 = 1/3); priors 1-3 are negatives. Zero logits and deltas."""
    from detectron2.structures import Boxes

    anchors = [Boxes(torch.tensor([[40.0, 30, 60, 70], [200, 200, 220, 220], [100, 0, 130, 30], [0, 200, 9, 299]]))]
    inst = _instances([[45, 40, 65, 60]], [1])
    logits = [torch.zeros(1, 4, 3)]
    deltas = [torch.zeros(1, 4, 4)]
    return anchors, inst, logits, deltas


@detectron2
def test_ssd_losses_by_hand_and_their_switches():
    """Positive prior 0: CE ln 3; 3 negatives (all ln 3) mined: loss_cls = 4 ln 3. Box targets
    (2.5, 0, 0, ln(0.5)/0.2 = -3.4657) against zero predictions: smooth-L1 = 2.0 + 2.9657."""
    from detectron2.utils.events import EventStorage

    box = 2.0 + (-math.log(0.5) / 0.2 - 0.5)
    anchors, inst, logits, deltas = _loss_inputs()
    model = _tiny_ssd(num_classes=2)
    with EventStorage() as storage:
        labels, boxes, matched = model.label_anchors(anchors, [inst])
        losses = model.losses(anchors, logits, labels, deltas, boxes, matched)
        assert losses["loss_cls"].item() == pytest.approx(4 * LN3, rel=1e-5)
        assert losses["loss_box_reg"].item() == pytest.approx(box, rel=1e-5)
        assert storage.latest()["num_pos_anchors"][0] == 1 and storage.latest()["num_mined_negatives"][0] == 3
        w = torch.tensor([[2.0, 1.0, 1.0, 1.0]])
        weighted = model.losses(anchors, logits, labels, deltas, boxes, matched, cls_weights=w, box_weights=3 * w)
        assert weighted["loss_cls"].item() == pytest.approx(5 * LN3, rel=1e-5)
        assert weighted["loss_box_reg"].item() == pytest.approx(6 * box, rel=1e-5)
        one = _tiny_ssd(num_classes=2, neg_pos_ratio=1.0, smooth_l1_beta=0.0)
        switched = one.losses(anchors, logits, labels, deltas, boxes, matched)
        assert switched["loss_cls"].item() == pytest.approx(2 * LN3, rel=1e-5)
        assert switched["loss_box_reg"].item() == pytest.approx(2.5 - math.log(0.5) / 0.2, rel=1e-5)


@detectron2
def test_inference_threshold_nms_and_top_k_on_a_crafted_case():
    """Priors 0 and 1 overlap (IoU 8100 / 10000 = 0.81 > 0.45); prior 4 overlaps prior 0 by 5000 / 15000 = 0.33
    and prior 1 by 3600 / 14500 = 0.25 (< 0.45). Class 0: NMS keeps prior 0 (0.9) over 1 (0.8), keeps 4 (0.7)
    and the far prior 2 (0.6). Class 1: prior 1 (0.5) suppresses prior 0 (0.05) and survives next to class
    0's prior 0 (NMS is class-wise); prior 3 scores 0.01, not > 0.01."""
    from detectron2.structures import Boxes

    model = _tiny_ssd(num_classes=2)
    anchors = Boxes(
        torch.tensor([[0.0, 0, 100, 100], [0, 0, 90, 90], [200, 200, 250, 250], [0, 200, 50, 250], [50, 0, 150, 100]])
    )
    scores = torch.tensor([[0.9, 0.05], [0.8, 0.5], [0.6, 0.0], [0.0, 0.01], [0.7, 0.0]])
    deltas = torch.zeros(5, 4)
    out = model.inference_single_image(anchors, scores, deltas, (300, 300))
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert out.pred_classes.tolist() == [0, 0, 0, 1]
    assert out.pred_boxes.tensor[0].tolist() == [0, 0, 100, 100]
    model.test_nms_thresh = 0.3  # 0.33 now suppresses prior 4 as well
    assert model.inference_single_image(anchors, scores, deltas, (300, 300)).scores.tolist() == pytest.approx(
        [0.9, 0.6, 0.5]
    )
    model.test_nms_thresh = 0.9  # 0.81 no longer suppresses
    assert len(model.inference_single_image(anchors, scores, deltas, (300, 300))) == 6
    model.test_score_thresh = 0.55
    assert model.inference_single_image(anchors, scores, deltas, (300, 300)).scores.tolist() == pytest.approx(
        [0.9, 0.8, 0.7, 0.6]
    )
    model.test_topk_per_class = 1
    assert model.inference_single_image(anchors, scores, deltas, (300, 300)).scores.tolist() == pytest.approx([0.9])
    model.test_score_thresh, model.test_topk_per_class, model.max_detections_per_image = 0.01, 400, 2
    assert len(model.inference_single_image(anchors, scores, deltas, (300, 300))) == 2


@detectron2
def test_forward_inference_uses_softmax_without_background_and_decodes_deltas():
    model = _tiny_ssd(num_classes=2).eval()
    seen = {}

    def spy(anchors, scores, deltas, image_size):
        seen.update(anchors=anchors, scores=scores, deltas=deltas)
        return image_size

    model.inference_single_image = spy
    torch.manual_seed(1)
    image = torch.rand(3, 300, 300) * 255
    with torch.no_grad():
        features = [model.backbone(image[None])[f] for f in model.head_in_features]
        predictions = model.head(features)
        images = model.preprocess_image([{"image": image}])
        model.forward_inference(images, features, predictions)
    logits = torch.cat([x.permute(0, 2, 3, 1).reshape(1, -1, 3) for x in predictions[0]], dim=1)[0]
    assert torch.allclose(seen["scores"], logits.softmax(-1)[:, :2])
    assert len(seen["anchors"]) == 8732 and seen["deltas"].shape == (8732, 4)


@detectron2
def test_preprocess_pads_to_the_input_size_and_refuses_larger_images():
    model = _tiny_ssd()
    images = model.preprocess_image([{"image": torch.zeros(3, 128, 160)}, {"image": torch.zeros(3, 300, 200)}])
    assert images.tensor.shape == (2, 3, 300, 300) and images.image_sizes == [(128, 160), (300, 200)]
    with pytest.raises(ValueError, match=r"at most 300x300, got 301x200.*Resize\(\(300, 300\)\)"):
        model.preprocess_image([{"image": torch.zeros(3, 301, 200)}])


@detectron2
def test_inconsistent_head_is_refused():
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import SSD, SSDHead

    model = _tiny_ssd()
    base = dict(
        backbone=model.backbone,
        anchor_generator=model.anchor_generator,
        num_classes=2,
        pixel_mean=[0] * 3,
        pixel_std=[1] * 3,
    )
    channels = [ShapeSpec(channels=s.channels) for s in model.backbone.output_shape().values()]
    with pytest.raises(ValueError, match="boxes per location"):
        SSD(head=SSDHead(input_shape=channels, num_classes=2, num_anchors=[6] * 6), **base)
    with pytest.raises(ValueError, match="set head.input_shape"):
        SSD(
            head=SSDHead(input_shape=[ShapeSpec(channels=8)] * 6, num_classes=2, num_anchors=[4, 6, 6, 6, 4, 4]), **base
        )
    with pytest.raises(ValueError, match="6 feature maps in input_shape but 5"):
        SSDHead(input_shape=channels, num_classes=2, num_anchors=[4] * 5)


@detectron2
def test_train_step_gives_finite_losses_an_empty_image_no_box_loss_and_inference_runs():
    from detectron2.utils.events import EventStorage

    model = _tiny_ssd(num_classes=2)
    image = torch.rand(3, 300, 300) * 255
    one = [{"image": image, "instances": _instances([[30, 40, 120, 200]], [1])}]
    empty = [{"image": image, "instances": _instances([], [])}]
    with EventStorage():
        losses = model(one)
        assert all(v.item() > 0 for v in losses.values())
        sum(losses.values()).backward()
        assert {k: v.item() for k, v in model(empty).items()} == {"loss_cls": 0.0, "loss_box_reg": 0.0}
    model.eval()
    with torch.no_grad():
        out = model([{"image": image[:, :250, :200], "height": 500, "width": 400}])[0]["instances"]
    assert out.image_size == (500, 400) and len(out) <= 200 and (out.scores > 0.01).all()


# ----------------------------------------------------------------------------- backbone
@detectron2
def test_backbone_outputs_channels_strides_and_l2norm():
    """Width 1: conv4_3 512 (stride 8), fc7 1024 (16), conv6_2 512, the rest 256. conv4_3 is L2-normalised
    with scale 20: every position's channel vector has norm 20 at initialisation."""
    from d2imbalance.modeling import SSDVGG

    torch.manual_seed(0)
    backbone = SSDVGG()
    shapes = backbone.output_shape()
    assert [(k, s.channels, s.stride) for k, s in shapes.items()] == [
        ("conv4_3", 512, 8), ("fc7", 1024, 16), ("conv6_2", 512, 32), ("conv7_2", 256, 64),
        ("conv8_2", 256, 100), ("conv9_2", 256, 300),
    ]  # fmt: skip
    assert backbone.padding_constraints == {"square_size": 300}
    small = SSDVGG(width_ratio=1 / 16, l2norm_scale=5.0)
    with torch.no_grad():
        out = small(torch.rand(1, 3, 300, 300))
    assert torch.allclose(out["conv4_3"].norm(dim=1), torch.full((38, 38), 5.0), atol=1e-3)
    assert small.output_shape()["conv4_3"].channels == 32 and small.output_shape()["fc7"].channels == 64
    assert SSDVGG(input_size=512, width_ratio=1 / 16).output_shape()["conv10_2"].stride == 512


def _caffe_vgg(input_size):
    """(name, in, out, kernel, stride, padding, dilation) of every convolution of SSD's VGG16, written out
    from ssd_pascal.py / ssd_pascal_512.py (VGGNetBody reduced + dilated, AddExtraLayers)."""
    body = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128)]
    body += [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv4_1", 256, 512)]
    body += [("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv5_1", 512, 512), ("conv5_2", 512, 512)]
    body += [("conv5_3", 512, 512)]
    layers = [(n, i, o, 3, 1, 1, 1) for n, i, o in body]
    layers += [("fc6", 512, 1024, 3, 1, 6, 6), ("fc7", 1024, 1024, 1, 1, 0, 1)]
    layers += [("conv6_1", 1024, 256, 1, 1, 0, 1), ("conv6_2", 256, 512, 3, 2, 1, 1)]
    layers += [("conv7_1", 512, 128, 1, 1, 0, 1), ("conv7_2", 128, 256, 3, 2, 1, 1)]
    if input_size == 300:
        layers += [("conv8_1", 256, 128, 1, 1, 0, 1), ("conv8_2", 128, 256, 3, 1, 0, 1)]
        layers += [("conv9_1", 256, 128, 1, 1, 0, 1), ("conv9_2", 128, 256, 3, 1, 0, 1)]
    else:
        layers += [("conv8_1", 256, 128, 1, 1, 0, 1), ("conv8_2", 128, 256, 3, 2, 1, 1)]
        layers += [("conv9_1", 256, 128, 1, 1, 0, 1), ("conv9_2", 128, 256, 3, 2, 1, 1)]
        layers += [("conv10_1", 256, 128, 1, 1, 0, 1), ("conv10_2", 128, 256, 4, 1, 1, 1)]
    return layers


@detectron2
@pytest.mark.parametrize("input_size", [300, 512])
def test_backbone_layers_are_the_caffe_networks(input_size):
    """Every convolution and pool of the width-1 network; Xavier-initialised zero-bias extra layers; the
    ReLU after each convolution; width_ratio scales channels (never below 1)."""
    from d2imbalance.modeling import SSDVGG

    torch.manual_seed(0)
    backbone = SSDVGG(input_size=input_size)
    convs = [
        (n, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
        for n, m in backbone.named_children()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert convs == _caffe_vgg(input_size)
    assert all(getattr(backbone, n).activation is torch.nn.functional.relu for n, *_ in convs)
    pools = [(n, m.kernel_size, m.stride, m.padding, m.ceil_mode) for n, m in backbone.named_children() if "pool" in n]
    assert pools == [(f"pool{i}", 2, 2, 0, True) for i in range(1, 5)] + [("pool5", 3, 1, 1, False)]
    assert backbone.conv6_1.bias.abs().sum() == 0 and backbone.conv9_2.bias.abs().sum() == 0
    bound = math.sqrt(6 / (128 * 9 + 256 * 9))  # xavier_uniform of conv9_2
    assert backbone.conv9_2.weight.abs().max() <= bound and backbone.conv9_2.weight.abs().max() > 0.9 * bound
    assert backbone.conv1_1.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)  # MSRA, fan-out
    assert backbone.conv4_3_norm.weight.shape == (512,)
    thin = SSDVGG(input_size=input_size, width_ratio=1e-3)
    assert thin.conv1_1.out_channels == 1 and thin.fc7.out_channels == 1


@detectron2
def test_backbone_norm_switch_and_errors():
    from d2imbalance.modeling import SSDVGG

    plain = SSDVGG(width_ratio=1 / 16)
    assert plain.conv1_1.norm is None and plain.conv1_1.bias is not None
    bn = SSDVGG(width_ratio=1 / 16, norm="BN")
    assert isinstance(bn.conv1_1.norm, torch.nn.BatchNorm2d) and bn.conv1_1.bias is None
    assert isinstance(bn.fc7.norm, torch.nn.BatchNorm2d) and bn.conv9_2.norm is None  # extras: no norm
    assert bn.conv9_2.bias is not None and not bn.conv9_2.bias.any()
    gn = SSDVGG(width_ratio=0.5, norm="GN")  # 16 groups of 2 (conv1_1) ... 32 (fc7) channels, as at width 1
    assert isinstance(gn.fc7.norm, torch.nn.GroupNorm) and gn.fc7.norm.num_groups == 16 and gn.fc7.bias is None
    assert SSDVGG(width_ratio=0.125, norm="GN").conv1_1.norm.num_groups == 4
    assert SSDVGG(input_size=512, width_ratio=1 / 16, norm="GN").conv5_3.norm.num_groups == 2
    with pytest.raises(ValueError, match=r"32 \* width_ratio = 3.2 groups"):
        SSDVGG(width_ratio=0.1, norm="GN")
    with pytest.raises(ValueError, match=r"SSDVGG is built for input sizes \[300, 512\]"):
        SSDVGG(input_size=400)
    with pytest.raises(ValueError, match="must be positive"):
        SSDVGG(width_ratio=0)


@pytest.fixture(scope="module")
def random_vgg16():
    """A randomly initialised torchvision VGG16 (no download)."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


@detectron2
def test_converter_round_trip_on_a_random_torchvision_vgg16(random_vgg16):
    """The converted weights reproduce torchvision's conv1_1-conv4_3 (before the L2 norm) and, with pool5
    3x3/s1 and the subsampled fc6 (dilation 6) and fc7, fc7 computed by hand."""
    import torch.nn.functional as F

    from d2imbalance.modeling import SSDVGG, convert_torchvision_vgg16

    vgg = random_vgg16
    state = vgg.state_dict()
    converted = convert_torchvision_vgg16(state)
    assert torch.equal(converted["fc6.weight"], state["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3])
    assert converted["fc6.weight"].shape == (1024, 512, 3, 3) and converted["fc7.weight"].shape == (1024, 1024, 1, 1)
    assert torch.equal(converted["fc7.weight"][:, :, 0, 0], state["classifier.3.weight"][::4, ::4])
    assert torch.equal(converted["fc7.bias"], state["classifier.3.bias"][::4])
    assert torch.equal(converted["conv5_3.weight"], state["features.28.weight"])

    backbone = SSDVGG().eval()
    result = backbone.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("conv6", "conv7", "conv8", "conv9", "conv4_3_norm")) for k in result.missing_keys)
    x = torch.rand(1, 3, 304, 304)  # 304 / 2^3 = 38 is even: Caffe's ceil pooling = torchvision's floor
    captured = {}
    backbone.conv4_3.register_forward_hook(lambda m, i, o: captured.update(conv4_3=o))
    with torch.no_grad():
        out = backbone(x)
        assert torch.allclose(captured["conv4_3"], vgg.features[:23](x), atol=1e-5)
        conv5 = F.max_pool2d(vgg.features[:30](x), 3, 1, 1)
        fc6 = F.relu(F.conv2d(conv5, converted["fc6.weight"], converted["fc6.bias"], padding=6, dilation=6))
        fc7 = F.relu(F.conv2d(fc6, converted["fc7.weight"], converted["fc7.bias"]))
    assert torch.allclose(out["fc7"], fc7, atol=1e-5)


@detectron2
def test_converter_refuses_other_networks():
    """vgg11 has no features.28; vgg16_bn's convolutions sit at other indices; a wrong fc shape is named."""
    from d2imbalance.modeling import convert_torchvision_vgg16

    with pytest.raises(ValueError, match="features.0.weight is missing: not a torchvision VGG16"):
        convert_torchvision_vgg16({"features.1.weight": torch.zeros(1)})
    state = {f"features.{i}.weight": torch.zeros(1) for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
    state["classifier.0.weight"] = torch.zeros(10, 4096)
    with pytest.raises(ValueError, match=r"classifier.0.weight is \(10, 4096\)"):
        convert_torchvision_vgg16(state)


@detectron2
def test_checkpoint_prefix_and_command_line_warm_start_an_ssd_model(tmp_path, monkeypatch, random_vgg16):
    """train.init_checkpoint = "torchvision-vgg16://IMAGENET1K_V1" converts once and caches; the CLI writes
    the same kind of checkpoint from a local file. No download: torchvision's weights are a random VGG16."""
    from detectron2.checkpoint import DetectionCheckpointer

    from d2imbalance.modeling import vgg

    with pytest.raises(ValueError, match="no VGG16 weights 'IMAGENET9K'"):
        vgg._torchvision_vgg16_state_dict("IMAGENET9K")  # refused before any download
    state = random_vgg16.state_dict()
    calls = []
    monkeypatch.setattr(vgg, "_torchvision_vgg16_state_dict", lambda name: calls.append(name) or state)
    monkeypatch.setenv("D2IMBALANCE_CACHE", str(tmp_path / "cache"))
    for _ in range(2):
        model = _tiny_ssd(num_classes=20)
        model.backbone = vgg.SSDVGG()
        DetectionCheckpointer(model).load("torchvision-vgg16://IMAGENET1K_V1")
        assert torch.equal(model.backbone.conv1_1.weight, state["features.0.weight"])
    assert calls == ["IMAGENET1K_V1"] and (tmp_path / "cache" / "ssd_vgg16_IMAGENET1K_V1.pth").is_file()

    torch.save(state, tmp_path / "vgg16.pth")
    vgg.main([str(tmp_path / "vgg16.pth"), str(tmp_path / "ssd.pth")])
    model = _tiny_ssd(num_classes=20)
    model.backbone = vgg.SSDVGG()
    DetectionCheckpointer(model).load(str(tmp_path / "ssd.pth"))
    assert torch.equal(model.backbone.fc7.bias, state["classifier.3.bias"][::4])


# ----------------------------------------------------------------------------- configs
SSD_CONFIGS = ["ssd300_voc0712", "ssd512_voc0712", "ssd300_coco", "ssd512_coco", "ssd300_shapes"]


@detectron2
@pytest.mark.parametrize("name", SSD_CONFIGS)
def test_ssd_configs_follow_the_recipes(name):
    from detectron2.config import instantiate

    from d2imbalance import get_config

    cfg = get_config(f"Baselines/{name}.py")
    size = 512 if "512" in name else 300
    recipe = {
        "ssd300_voc0712": (20, (20, 90, (10, 20))),
        "ssd512_voc0712": (20, (15, 90, (7, 15))),
        "ssd300_coco": (80, (15, 90, (7, 15))),
        "ssd512_coco": (80, (10, 90, (4, 10))),
        "ssd300_shapes": (4, (20, 90, (10, 20))),
    }[name]
    num_maps = 7 if size == 512 else 6
    assert cfg.model.num_classes == recipe[0]
    assert (cfg.model.anchor_generator.min_sizes, cfg.model.anchor_generator.max_sizes) == ssd_prior_sizes(
        size, num_maps, *recipe[1]
    )
    assert cfg.model.backbone.input_size == size
    assert cfg.dataloader.train.mapper.augmentations[3].shape == (size, size)
    assert cfg.dataloader.test.mapper.augmentations[0].shape == (size, size)
    assert cfg.dataloader.train.mapper.augmentations[1].tfm_or_aug.fill == cfg.model.pixel_mean
    assert cfg.optimizer.weight_decay == 5e-4
    ref = cfg.train.lr_reference
    assert ref["lr"] == cfg.optimizer.lr and ref["total_batch_size"] == cfg.dataloader.train.total_batch_size
    if name != "ssd300_shapes":
        assert cfg.optimizer.lr == 1e-3 and cfg.dataloader.train.total_batch_size == 32
        assert cfg.train.init_checkpoint == "torchvision-vgg16://IMAGENET1K_V1"
        model = instantiate(cfg.model)
        cfg.optimizer.params.model = model
        groups = instantiate(cfg.optimizer).param_groups
        bias = [g for g in groups if any(p is model.head.cls_score[0].bias for p in g["params"])][0]
        weight = [g for g in groups if any(p is model.head.cls_score[0].weight for p in g["params"])][0]
        assert (bias["lr"], bias["weight_decay"]) == (2e-3, 0.0)  # Caffe: lr_mult 2, decay_mult 0
        assert (weight["lr"], weight["weight_decay"]) == (1e-3, 5e-4)
        schedule = instantiate(cfg.lr_multiplier)
        steps = (80000, 100000) if "voc" in name else (280000, 360000)
        assert cfg.train.max_iter == (120000 if "voc" in name else 400000)
        for it, value in [(0, 1.0), (steps[0] - 1, 1.0), (steps[0], 0.1), (steps[1], 0.01)]:
            assert schedule(it / cfg.train.max_iter) == pytest.approx(value)
    else:
        assert cfg.model.backbone.norm == "BN" and cfg.model.backbone.width_ratio == 0.125
        assert cfg.train.init_checkpoint == ""


@detectron2
def test_voc_configs_read_07_12_trainval_without_difficult_and_evaluate_voc07_test():
    from detectron2.evaluation import PascalVOCDetectionEvaluator
    from omegaconf import OmegaConf

    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator

    from d2imbalance import get_config
    from d2imbalance.data.voc import voc_detection_dataset_dicts

    cfg = get_config("Baselines/ssd300_voc0712.py")
    train = cfg.dataloader.train.dataset
    assert train._target_ is voc_detection_dataset_dicts
    assert tuple(train.names) == ("voc_2007_trainval", "voc_2012_trainval") and train.difficult == "exclude"
    assert cfg.dataloader.test.dataset.names == "voc_2007_test"
    voc, recall = cfg.dataloader.evaluator
    assert voc._target_ is PascalVOCDetectionEvaluator and voc.dataset_name == "voc_2007_test"
    recall = OmegaConf.to_container(cfg.dataloader, resolve=True)["evaluator"][1]
    assert recall["_target_"] is RecallBySizeEvaluator and recall["dataset_name"] == "voc_2007_test"
    # the paper's protocol: sizes in the 300x300 input (§3.1); SSD's NMS 0.45 / top 200 are the protocol's
    assert (recall["size_by"], recall["model_nms_thresh"], recall["model_max_dets"], recall["model_score_thresh"]) == (
        "input", 0.45, 200, 0.01)
    for name, size_by in (("ssd300_coco", "original"), ("ssd512_coco", "original"), ("ssd300_shapes", "input"),
                          ("ssd512_voc0712", "input")):
        evaluators = OmegaConf.to_container(get_config(f"Baselines/{name}.py").dataloader, resolve=True)["evaluator"]
        assert evaluators[1]["_target_"] is RecallBySizeEvaluator and evaluators[1]["size_by"] == size_by, name


def shapes_step_and_test(config_name, tmp_path):
    """The train_net path (d2imbalance.engine) on the mini shapes dataset for an SSD-family shapes
    config: its dataloader (the SSD augmentation), one seeded SimpleTrainer step at batch 2 and the
    schedule's first learning rate, then do_test. Returns (the step's EventStorage scalars, the evaluation results); shared by the SSD,
    SSD-SCB and FSSD tests."""
    from detectron2.config import instantiate
    from detectron2.engine import SimpleTrainer
    from detectron2.utils.events import EventStorage

    from d2imbalance import get_config
    from d2imbalance.engine import do_test, prepare_all_datasets

    cfg = get_config(config_name)
    cfg.dataloader.train.dataset.names = "shapes_mini_train"
    cfg.dataloader.test.dataset.names = "shapes_mini_val"
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    cfg.dataloader.test.num_workers = 0
    cfg.dataloader.evaluator[0].output_dir = str(tmp_path)
    prepare_all_datasets(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    # The first step's learning rate as train_net sets it (detectron2's LRMultiplier applies the schedule,
    # warm-up included, before the first step): at the full rate one step from scratch can diverge.
    first_step_factor = instantiate(cfg.lr_multiplier)(0.0)
    for group in optimizer.param_groups:
        group["lr"] *= first_step_factor
    trainer = SimpleTrainer(model, instantiate(cfg.dataloader.train), optimizer)
    with EventStorage() as storage:
        trainer.iter = 0
        trainer.run_step()
        latest = {k: v[0] for k, v in storage.latest().items()}
    return latest, do_test(cfg, model.eval())


@detectron2
def test_ssd300_shapes_trains_a_seeded_step_and_evaluates_as_train_net_does(tmp_path):
    """One step of Baselines/ssd300_shapes.py, then COCO AP and the recall by size."""
    latest, results = shapes_step_and_test("Baselines/ssd300_shapes.py", tmp_path)
    assert math.isfinite(latest["total_loss"]) and latest["num_pos_anchors"] >= 1
    assert latest["num_mined_negatives"] == pytest.approx(3 * latest["num_pos_anchors"])
    assert set(results["bbox"]) >= {"AP", "AP50", "APs", "APm", "APl"}
    recall = results["recall_by_size"]
    assert {"recall_small@0.3", "recall_large@0.01", "truncated_images@0.01"} <= set(recall)
    assert recall["num_small"] + recall["num_medium"] + recall["num_large"] > 0
