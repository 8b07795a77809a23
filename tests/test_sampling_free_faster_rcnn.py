"""Sampling-Free Faster R-CNN's parts on crafted inputs, CPU, in seconds: SamplingFreeRPN and
SamplingFreeROIHeads with their predictors zeroed, so every logit is the bias and every loss is worked out by
hand; the pure softmax-prior arithmetic; every switch; images without objects.

RPN case. A 64 x 64 image, one level of stride 16 (4 x 4 positions), one 32 x 32 anchor per position
centred at (16 i, 16 j) (offset 0), the object G = (0, 0, 32, 32), matcher 0.3 / 0.7:

    anchor centred at    IoU with G                      label
    (16, 16)             1                               1
    (16, 0) (0, 16) (32, 16) (16, 32)   512 / 1536 = 1/3    -1 (ignored)
    (0, 0) (32, 0) (0, 32) (32, 32)     256 / 1792 = 1/7    0
    the 7 others         0                               0

N = 12 valid anchors, N_f = 1: pi = 1/12, objectness bias -log 11. With every logit at -log 11, the BCE
sum over the valid anchors is log 12 + 11 log(12/11). The deltas' bias is (0.1, 0, 0, 0) and the positive
anchor is G itself, so L_loc = 0.1 (smooth L1 with beta 0). Both are divided by batch_size_per_image = 4
(a sampling RPN would keep 4 anchors): r = 0.1 / (log 12 + 11 log(12/11)).

ROI case. 2 classes, the object A = (0, 0, 100, 100) of class 0 and the proposals P70 = (0, 0, 100, 70)
(IoU 0.7: class 0), P45 = (0, 0, 100, 45), Q1, Q2 (background); A is appended by detectron2: N = 5, N_f = 2,
pi = 2 / (5 * 2) = 0.2, biases (-log 3, -log 3, 0) (softmax (0.2, 0.2, 0.6)). The CE sum is
2 log 5 + 3 log(5/3); the box loss (weights 10, 10, 5, 5, deltas 0) of P70 is 10 * 15/70 + 5 log(10/7)
and of A 0. Both are divided by batch_size_per_image = 2 (a sampling head would keep 2 RoIs).
"""
import math
import re

import pytest
import torch

pytestmark = pytest.mark.detectron2

G = (0.0, 0.0, 32.0, 32.0)
RPN_CLS_SUM = math.log(12) + 11 * math.log(12 / 11)
RPN_LOC_SUM = 0.1

NUM_CLASSES = 2
SIZE = (320, 320)
A = (0.0, 0.0, 100.0, 100.0)
P70, P45 = (0.0, 0.0, 100.0, 70.0), (0.0, 0.0, 100.0, 45.0)
Q1, Q2 = (150.0, 150.0, 200.0, 200.0), (250.0, 20.0, 300.0, 70.0)
ROI_CLS_SUM = 2 * math.log(5) + 3 * math.log(5 / 3)
ROI_BOX_SUM = 10 * 15 / 70 + 5 * math.log(10 / 7)


def storage_run(fn):
    """fn() inside an EventStorage: (its result, the scalars written)."""
    from detectron2.utils.events import EventStorage

    with EventStorage() as storage:
        out = fn()
    return out, {k: v[0] for k, v in storage.latest().items()}


# ------------------------------------------------------------------------------------------------ RPN


def rpn(**kwargs):
    """SamplingFreeRPN on one 4-channel level of stride 16, one 32 x 32 anchor per position; the objectness
    and delta predictors' weights are zero, the deltas' bias is (0.1, 0, 0, 0)."""
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.proposal_generator.rpn import StandardRPNHead

    from sampling_free import SamplingFreeRPN

    torch.manual_seed(0)
    head = StandardRPNHead(in_channels=4, num_anchors=1)
    with torch.no_grad():
        head.objectness_logits.weight.zero_(), head.anchor_deltas.weight.zero_()
        head.anchor_deltas.bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0]))
    args = dict(
        in_features=["p4"], head=head,
        anchor_generator=DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[16], offset=0.0),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=4, positive_fraction=0.5, pre_nms_topk=(100, 100), post_nms_topk=(10, 10),
    )  # fmt: skip
    return SamplingFreeRPN(**{**args, **kwargs}).train()


def rpn_step(model, objects=(G,)):
    """One training forward on one 64 x 64 image: (losses, scalars)."""
    from detectron2.structures import Boxes, ImageList, Instances

    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor([list(b) for b in objects]).reshape(-1, 4))
    inst.gt_classes = torch.zeros(len(objects), dtype=torch.long)
    feats = {"p4": torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))}
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    (_, losses), scalars = storage_run(lambda: model(images, feats, [inst]))
    return losses, scalars


def test_rpn_labels_every_anchor_without_sampling():
    """1 positive, 11 background, 4 ignored (module docstring), though batch_size_per_image is 4."""
    from detectron2.structures import Boxes, Instances

    model = rpn()
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor([G]))
    anchors = model.anchor_generator([torch.zeros(1, 4, 4, 4)])
    labels, _ = model.label_and_sample_anchors(anchors, [inst])
    assert [(labels[0] == v).sum().item() for v in (1, 0, -1)] == [1, 11, 4]


def test_rpn_first_batch_prior_and_guided_loss_by_hand():
    model = rpn()
    assert model.prior.item() == 0.0 and model.rpn_head.objectness_logits.bias.item() == 0.0
    losses, scalars = rpn_step(model)
    assert model.prior.item() == pytest.approx(1 / 12)
    assert model.rpn_head.objectness_logits.bias.item() == pytest.approx(-math.log(11), abs=1e-6)
    r = RPN_LOC_SUM / RPN_CLS_SUM
    assert losses["loss_rpn_loc"].item() == pytest.approx(RPN_LOC_SUM / 4, rel=1e-5)
    assert losses["loss_rpn_cls"].item() == pytest.approx(r * RPN_CLS_SUM / 4, rel=1e-5)  # = L_loc in value
    assert scalars["sampling_free/rpn_guided_ratio"] == pytest.approx(r, rel=1e-5)
    assert scalars["sampling_free/rpn_loss_cls_unscaled"] == pytest.approx(RPN_CLS_SUM / 4, rel=1e-5)
    assert scalars["sampling_free/rpn_prior"] == pytest.approx(1 / 12)
    assert scalars["sampling_free/rpn_num_samples"] == 12
    assert scalars["sampling_free/rpn_fg_fraction"] == pytest.approx(1 / 12)
    assert scalars["rpn/num_pos_anchors"] == 1 and scalars["rpn/num_neg_anchors"] == 11
    # At pi* the BCE gradient on the shared bias is sum(p - y) = 12/12 - 1 = 0 (Eq. 4): the first batch's
    # loss was computed with the new bias.
    losses["loss_rpn_cls"].backward()
    assert model.rpn_head.objectness_logits.bias.grad.abs().item() < 1e-7


def test_rpn_second_batch_keeps_the_prior():
    model = rpn()
    rpn_step(model)
    with torch.no_grad():
        model.rpn_head.objectness_logits.bias.fill_(0.5)
    _, scalars = rpn_step(model)
    assert "sampling_free/rpn_prior" not in scalars and model.rpn_head.objectness_logits.bias.item() == 0.5


@pytest.mark.parametrize("mode", ["paper", "official", "off"])
def test_rpn_guided_loss_modes(mode):
    """"official" is the paper's r in the RPN (the authors' RPN loss); "off" leaves L_cls."""
    losses, scalars = rpn_step(rpn(guided_loss=mode))
    expected = RPN_CLS_SUM / 4 if mode == "off" else RPN_LOC_SUM / 4
    assert losses["loss_rpn_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert scalars["sampling_free/rpn_guided_ratio"] == pytest.approx(
        1.0 if mode == "off" else RPN_LOC_SUM / RPN_CLS_SUM, rel=1e-5)


def test_rpn_fixed_prior_is_set_at_construction_and_kept():
    """pi = 0.2: bias -log 4; the loss uses it: -log 0.2 - 11 log 0.8."""
    model = rpn(prior_prob=0.2, guided_loss="off")
    assert model.rpn_head.objectness_logits.bias.item() == pytest.approx(-math.log(4))
    losses, scalars = rpn_step(model)
    assert model.prior.item() == pytest.approx(0.2) and "sampling_free/rpn_prior" not in scalars
    assert losses["loss_rpn_cls"].item() == pytest.approx((-math.log(0.2) - 11 * math.log(0.8)) / 4, rel=1e-5)


def test_rpn_loss_weights_enter_as_in_eq_6():
    """w_cls = 2, w_reg = 3: r = w_reg L_reg / L_cls, loss_rpn_cls = w_cls r L_cls = 2 * 3 * L_loc."""
    losses, scalars = rpn_step(rpn(loss_weight={"loss_rpn_cls": 2.0, "loss_rpn_loc": 3.0}))
    assert scalars["sampling_free/rpn_guided_ratio"] == pytest.approx(3 * RPN_LOC_SUM / RPN_CLS_SUM, rel=1e-5)
    assert losses["loss_rpn_cls"].item() == pytest.approx(6 * RPN_LOC_SUM / 4, rel=1e-5)


def test_rpn_image_without_objects():
    """No foreground: L_loc = 0, r = 0, both losses exactly 0 and finite; the prior waits."""
    model = rpn()
    losses, scalars = rpn_step(model, objects=())
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in losses.values())
    assert model.prior.item() == 0.0 and model.rpn_head.objectness_logits.bias.item() == 0.0
    assert scalars["sampling_free/rpn_num_samples"] == 16 and scalars["sampling_free/rpn_guided_ratio"] == 0.0


@pytest.mark.parametrize("kwargs", [dict(guided_loss="focal"), dict(prior_prob=0.0), dict(prior_prob=1.0)])
def test_rpn_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        rpn(**kwargs)


# ---------------------------------------------------------------------------------------------- ROI heads


PREDICTOR_SWITCHES = (
    "loss_rois_per_image", "prior_prob", "optimal_bias_init", "guided_loss", "class_adaptive_threshold")


def roi_heads(predictor_class=None, **kwargs):
    """SamplingFreeROIHeads: one 8-channel level at stride 4, a 16-d fc head, batch_size_per_image 2, and a
    SamplingFreeOutputLayers (loss_rois_per_image 2) whose weights are zero (logits = bias, deltas 0).
    The predictor's switches in kwargs go to the predictor, the rest to the ROI heads."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    from sampling_free import SamplingFreeOutputLayers, SamplingFreeROIHeads

    torch.manual_seed(0)
    switches = {k: kwargs.pop(k) for k in PREDICTOR_SWITCHES if k in kwargs}
    if predictor_class is None:
        predictor_class, switches = SamplingFreeOutputLayers, {"loss_rois_per_image": 2, **switches}
    predictor = predictor_class(ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                num_classes=NUM_CLASSES, test_score_thresh=0.05, **switches)  # fmt: skip
    with torch.no_grad():
        predictor.cls_score.weight.zero_(), predictor.bbox_pred.weight.zero_(), predictor.bbox_pred.bias.zero_()
    args = dict(
        num_classes=NUM_CLASSES, batch_size_per_image=2, positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        box_in_features=["p2"],
        box_pooler=ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=predictor,
    )  # fmt: skip
    return SamplingFreeROIHeads(**{**args, **kwargs}).train()


def proposals_and_targets(objects=((A, 0),), boxes=(P70, P45, Q1, Q2)):
    from detectron2.structures import Boxes, Instances

    props = Instances(SIZE)
    props.proposal_boxes = Boxes(torch.tensor([list(b) for b in boxes]).reshape(-1, 4))
    props.objectness_logits = torch.zeros(len(boxes))
    target = Instances(SIZE)
    target.gt_boxes = Boxes(torch.tensor([list(b) for b, _ in objects]).reshape(-1, 4))
    target.gt_classes = torch.tensor([c for _, c in objects], dtype=torch.long)
    return [props], [target]


def roi_forward(model, proposals, targets=None):
    from detectron2.structures import ImageList

    g = torch.Generator().manual_seed(1)
    feats = {"p2": torch.rand(len(proposals), 8, SIZE[0] // 4, SIZE[1] // 4, generator=g)}
    images = ImageList(torch.zeros(len(proposals), 3, *SIZE), [SIZE] * len(proposals))
    return storage_run(lambda: model(images, feats, proposals, targets))


def test_roi_heads_use_every_proposal_with_the_gt_appended():
    model = roi_heads()
    props, targets = proposals_and_targets()
    labelled, _ = storage_run(lambda: model.label_and_sample_proposals(props, targets))
    rows = sorted(zip(map(tuple, labelled[0].proposal_boxes.tensor.tolist()), labelled[0].gt_classes.tolist()))
    assert rows == sorted([(P70, 0), (P45, 2), (Q1, 2), (Q2, 2), (A, 0)])


def test_roi_heads_leave_out_the_proposals_the_matcher_ignores():
    """With an ignore band [0.4, 0.5) (detectron2's ROI matcher has none, a user's may), P45 (IoU 0.45 with A)
    is left out; the background and the foreground keep their labels."""
    from detectron2.modeling.matcher import Matcher

    model = roi_heads(proposal_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=False))
    labelled, _ = storage_run(lambda: model.label_and_sample_proposals(*proposals_and_targets()))
    rows = sorted(zip(map(tuple, labelled[0].proposal_boxes.tensor.tolist()), labelled[0].gt_classes.tolist()))
    assert rows == sorted([(P70, 0), (Q1, 2), (Q2, 2), (A, 0)])


def test_roi_heads_first_batch_prior_guided_loss_and_signals_by_hand():
    model = roi_heads()
    (selected, losses), scalars = roi_forward(model, *proposals_and_targets())
    assert len(selected[0]) == 5  # every labelled proposal, though batch_size_per_image is 2
    bias = model.box_predictor.cls_score.bias
    assert model.box_predictor.prior.item() == pytest.approx(0.2)
    assert bias.tolist() == pytest.approx([-math.log(3), -math.log(3), 0.0], abs=1e-6)
    r = ROI_BOX_SUM / ROI_CLS_SUM
    assert losses["loss_box_reg"].item() == pytest.approx(ROI_BOX_SUM / 2, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(r * ROI_CLS_SUM / 2, rel=1e-5)
    assert scalars["sampling_free/roi_guided_ratio"] == pytest.approx(r, rel=1e-5)
    assert scalars["sampling_free/roi_loss_cls_unscaled"] == pytest.approx(ROI_CLS_SUM / 2, rel=1e-5)
    assert scalars["sampling_free/roi_prior"] == pytest.approx(0.2)
    assert scalars["sampling_free/roi_num_samples"] == 5
    assert scalars["roi_head/num_fg_samples"] == 2 and scalars["roi_head/num_bg_samples"] == 3
    assert model.box_predictor.proposal_counts.tolist() == [2, 0, 3]
    # The CE gradient on the background bias is 5 * p_bg - N_bg = 5 * 0.6 - 3 = 0 at the optimum; the
    # foreground ones are 5 * 0.2 - 2 = -1 (class 0) and 5 * 0.2 = 1 (class 1), times r / 2.
    losses["loss_cls"].backward()
    assert bias.grad.tolist() == pytest.approx([-r / 2, r / 2, 0.0], abs=1e-6)


def test_softmax_prior_minimises_the_initial_loss():
    """The softmax form of Eqs. 3-4: pi* = N_f / (N C) minimises -log pi - (N/N_f - 1) log(1 - C pi);
    its biases give the probabilities (pi, ..., pi, 1 - C pi); C = 1 is the sigmoid bias."""
    from sampling_free import initial_softmax_classification_loss, prior_to_bias, softmax_prior_to_bias

    n_f, n, c = 7, 900, 5
    best = n_f / (n * c)
    at = initial_softmax_classification_loss(best, n_f, n, c)
    for other in (best * 0.9, best * 1.1):
        assert initial_softmax_classification_loss(other, n_f, n, c) > at
    b_fg, b_bg = softmax_prior_to_bias(best, c)
    probs = torch.softmax(torch.tensor([b_fg] * c + [b_bg], dtype=torch.float64), 0)
    assert probs.tolist() == pytest.approx([best] * c + [1 - c * best])
    assert softmax_prior_to_bias(0.25, 1)[0] == pytest.approx(prior_to_bias(0.25)) == pytest.approx(-math.log(3))
    with pytest.raises(ValueError):
        softmax_prior_to_bias(0.5, 2)  # C * pi = 1: no background left


@pytest.mark.parametrize("mode,factor", [("paper", 1.0), ("official", 2.0), ("off", None)])
def test_roi_guided_loss_modes(mode, factor):
    (_, losses), _ = roi_forward(roi_heads(guided_loss=mode), *proposals_and_targets())
    expected = ROI_CLS_SUM / 2 if factor is None else factor * ROI_BOX_SUM / 2
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(ROI_BOX_SUM / 2, rel=1e-5)


def test_roi_without_optimal_bias_keeps_the_predictor_bias():
    """optimal_bias_init=False (the authors' code): bias 0, every class 1/3: CE sum 5 log 3."""
    model = roi_heads(optimal_bias_init=False, guided_loss="off")
    (_, losses), scalars = roi_forward(model, *proposals_and_targets())
    assert model.box_predictor.cls_score.bias.tolist() == [0.0, 0.0, 0.0] and model.box_predictor.prior.item() == 0.0
    assert "sampling_free/roi_prior" not in scalars
    assert losses["loss_cls"].item() == pytest.approx(5 * math.log(3) / 2, rel=1e-5)


def test_roi_second_batch_keeps_the_prior():
    """pi is measured once: a later batch with foreground neither measures it again nor resets the bias."""
    model = roi_heads()
    roi_forward(model, *proposals_and_targets())
    with torch.no_grad():
        model.box_predictor.cls_score.bias.fill_(0.5)
    _, scalars = roi_forward(model, *proposals_and_targets())
    assert "sampling_free/roi_prior" not in scalars and model.box_predictor.prior.item() == pytest.approx(0.2)
    assert model.box_predictor.cls_score.bias.tolist() == [0.5, 0.5, 0.5]


def test_roi_losses_normalised_per_image():
    """The case's image twice in one batch: twice the RoIs over twice loss_rois_per_image x images, so the
    same losses as one image."""
    (p, t), model = proposals_and_targets(), roi_heads()
    (_, losses), _ = roi_forward(model, p + proposals_and_targets()[0], t + proposals_and_targets()[1])
    assert losses["loss_box_reg"].item() == pytest.approx(ROI_BOX_SUM / 2, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(ROI_BOX_SUM / 2, rel=1e-5)


def test_roi_fixed_prior():
    """pi = 0.1, C = 2: biases (log(0.1 / 0.8), same, 0), kept through training."""
    model = roi_heads(prior_prob=0.1, guided_loss="off")
    assert model.box_predictor.cls_score.bias.tolist() == pytest.approx([-math.log(8), -math.log(8), 0.0])
    (_, losses), scalars = roi_forward(model, *proposals_and_targets())
    assert model.box_predictor.prior.item() == pytest.approx(0.1) and "sampling_free/roi_prior" not in scalars
    assert losses["loss_cls"].item() == pytest.approx((-2 * math.log(0.1) - 3 * math.log(0.8)) / 2, rel=1e-5)


def test_roi_image_without_objects():
    """Only background: the box loss is 0, r = 0, loss_cls exactly 0, no NaN; the prior waits, the
    background is counted."""
    model = roi_heads()
    (_, losses), scalars = roi_forward(model, *proposals_and_targets(objects=()))
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in losses.values())
    assert model.box_predictor.prior.item() == 0.0 and model.box_predictor.proposal_counts.tolist() == [0, 0, 4]
    assert scalars["sampling_free/roi_guided_ratio"] == 0.0


def inference_classes(model):
    model.eval()
    props, _ = proposals_and_targets()
    with torch.no_grad():
        (instances, _), _ = roi_forward(model, props)
    return instances[0].pred_classes.tolist(), instances[0].scores


def test_class_adaptive_thresholds_filter_per_class():
    """Scores softmax(-log 3, -log 3, 0) = (0.2, 0.2, 0.6) for every RoI. Counts (1, 8, bg 11), N = 20:
    theta = (0.05, 0.4), so class 0 passes and class 1 does not. With the fixed 0.05 both pass; with the
    threshold 0.25 neither."""
    model = roi_heads(prior_prob=0.2)
    model.box_predictor.proposal_counts.copy_(torch.tensor([1, 8, 11]))
    assert model.box_predictor.score_thresholds().tolist() == pytest.approx([0.05, 0.4])
    classes, scores = inference_classes(model)
    assert classes and set(classes) == {0} and scores.tolist() == pytest.approx([0.2] * len(classes))
    assert model.box_predictor.test_score_thresh == 0.05  # the thresholds are passed, not swapped in
    fixed = roi_heads(prior_prob=0.2, class_adaptive_threshold=False)
    fixed.box_predictor.proposal_counts.copy_(torch.tensor([1, 8, 11]))
    assert set(inference_classes(fixed)[0]) == {0, 1}
    fixed.box_predictor.test_score_thresh = 0.25
    assert inference_classes(fixed)[0] == []


def test_thresholds_from_a_single_foreground_proposal():
    """One foreground proposal is statistics enough: counts (1, 0, bg 3) give theta = (1/4, 0), not pi."""
    model = roi_heads(prior_prob=0.1)
    model.box_predictor.proposal_counts.copy_(torch.tensor([1, 0, 3]))
    assert model.box_predictor.score_thresholds().tolist() == pytest.approx([0.25, 0.0])


def test_thresholds_without_statistics(caplog):
    """No counts: theta_j = pi when the prior is known (Eq. 7, equal frequencies), else the fixed value,
    with one warning however often it is asked."""
    assert roi_heads(prior_prob=0.1).box_predictor.score_thresholds().tolist() == pytest.approx([0.1, 0.1])
    predictor = roi_heads().box_predictor
    with caplog.at_level("WARNING", logger="sampling_free.fast_rcnn"):
        assert predictor.score_thresholds() == 0.05 and predictor.score_thresholds() == 0.05
    assert [r.getMessage() for r in caplog.records].count(
        "Sampling-Free box predictor: no proposal statistics (not trained) and no prior; using the fixed "
        "test_score_thresh=0.05 instead of the class-adaptive thresholds.") == 1


def test_proposal_counts_stay_exact_over_a_long_schedule():
    """A COCO 1x run labels ~1.4e9 proposals; the counts are integers, so a batch still adds exactly (float32
    would round 2**24 + 3 to 2**24 + 4)."""
    model = roi_heads(prior_prob=0.1)
    model.box_predictor.proposal_counts.fill_(2**24)
    storage_run(lambda: model.box_predictor.count_proposal_labels(torch.tensor([0, 2, 2, 2])))
    assert model.box_predictor.proposal_counts.tolist() == [2**24 + 1, 2**24, 2**24 + 3]
    # A batch of class-0 RoIs only (no background, no class 1) is counted in its own column.
    storage_run(lambda: model.box_predictor.count_proposal_labels(torch.tensor([0, 0])))
    assert model.box_predictor.proposal_counts.tolist() == [2**24 + 3, 2**24, 2**24 + 3]


@pytest.mark.parametrize(
    "kwargs",
    [dict(guided_loss="focal"), dict(prior_prob=0.5), dict(prior_prob=0.1, optimal_bias_init=False),
     dict(box_head_recompute_chunk=0), dict(box_head_recompute_chunk="512"),
     dict(box_head_recompute_chunk=512, train_on_pred_boxes=True)],
)  # fmt: skip
def test_roi_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        roi_heads(**kwargs)


@pytest.mark.parametrize(
    "kwargs,words",
    [(dict(loss_rois_per_image=0), "loss_rois_per_image=0"), (dict(loss_rois_per_image="512"), "'512'"),
     (dict(use_sigmoid_ce=True), "use_sigmoid_ce=False")],
)  # fmt: skip
def test_predictor_bad_arguments_are_named(kwargs, words):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from sampling_free import SamplingFreeOutputLayers

    args = dict(box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=2, loss_rois_per_image=2)
    with pytest.raises(ValueError, match=re.escape(words)):
        SamplingFreeOutputLayers(ShapeSpec(channels=16), **{**args, **kwargs})


def test_roi_heads_refuse_detectron2s_predictor():
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers

    with pytest.raises(ValueError, match="sampling_free.SamplingFreeOutputLayers"):
        roi_heads(predictor_class=FastRCNNOutputLayers)


@pytest.mark.parametrize("rois", [1, 4])
def test_loss_rois_per_image_is_the_normaliser(rois):
    """1 or 4 RoIs per image instead of 2: both ROI losses are divided by it (r is unchanged)."""
    (_, losses), scalars = roi_forward(roi_heads(loss_rois_per_image=rois), *proposals_and_targets())
    assert losses["loss_box_reg"].item() == pytest.approx(ROI_BOX_SUM / rois, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(ROI_BOX_SUM / rois, rel=1e-5)
    assert scalars["sampling_free/roi_guided_ratio"] == pytest.approx(ROI_BOX_SUM / ROI_CLS_SUM, rel=1e-5)


def test_predictor_from_a_yacs_config_normalises_to_its_batch_size_per_image():
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec

    from sampling_free import SamplingFreeOutputLayers

    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 2, 256
    predictor = SamplingFreeOutputLayers(cfg, ShapeSpec(channels=16))
    assert predictor.loss_rois_per_image == 256 and predictor.guided_loss == "paper"
    assert predictor.optimal_bias_init and predictor.class_adaptive_threshold and predictor.prior.item() == 0.0


def box_stage_step(**kwargs):
    """One training forward and backward of the ROI heads (random predictor weights) on two images, the
    first with the case's 4 proposals, the second with 3: (losses, bytes autograd saved in the forward,
    the gradients of the box head, predictor and feature map)."""
    from detectron2.structures import ImageList

    model = roi_heads(**kwargs)
    torch.nn.init.normal_(model.box_predictor.cls_score.weight, std=0.1)
    torch.nn.init.normal_(model.box_predictor.bbox_pred.weight, std=0.1)
    (p0,), (t0,) = proposals_and_targets()
    (p1,), (t1,) = proposals_and_targets(objects=((Q1, 1),), boxes=(Q1, Q2, P45))
    g = torch.Generator().manual_seed(1)
    feats = {"p2": torch.rand(2, 8, SIZE[0] // 4, SIZE[1] // 4, generator=g).requires_grad_()}
    images = ImageList(torch.zeros(2, 3, *SIZE), [SIZE] * 2)
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() != feats["p2"].untyped_storage().data_ptr():
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (_, losses), _ = storage_run(lambda: model(images, feats, [p0, p1], [t0, t1]))
    sum(losses.values()).backward()
    grads = [p.grad for p in model.box_head.parameters()] + [p.grad for p in model.box_predictor.parameters()]
    return losses, sum(saved.values()), grads + [feats["p2"].grad]


@pytest.mark.parametrize("chunk", [1, 2])
def test_box_head_recompute_same_losses_and_gradients_far_less_kept(chunk):
    """box_head_recompute_chunk=1 or 2 cuts both images' RoIs (5 and 4 with the ground truth) into chunks:
    the losses and every gradient are those of detectron2's single pass; the pooled 8 x 7 x 7 features of
    the 9 RoIs are no longer kept for the backward pass."""
    losses, plain_bytes, grads = box_stage_step()
    r_losses, recomputed_bytes, r_grads = box_stage_step(box_head_recompute_chunk=chunk)
    assert losses.keys() == r_losses.keys()
    for k in losses:
        torch.testing.assert_close(r_losses[k], losses[k])
    for got, want in zip(r_grads, grads):
        torch.testing.assert_close(got, want)
    pooled = 9 * 8 * 7 * 7 * 4
    assert plain_bytes >= pooled
    assert recomputed_bytes < plain_bytes - pooled


def test_declares_no_hyperparameters():
    from sampling_free import HYPERPARAMETERS, SamplingFreeROIHeads, SamplingFreeRPN

    assert SamplingFreeRPN.HYPERPARAMETERS == SamplingFreeROIHeads.HYPERPARAMETERS == HYPERPARAMETERS == ()
