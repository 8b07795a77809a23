"""DRFastRCNNOutputLayers / DRROIHeads (drloss.faster_rcnn) on crafted RoIs, CPU, in seconds.

The crafted batch (K = 2 classes, class logits = logit(p), background column 5.0, never used):

    image 1: r1 class 0, scores (0.8, 0.3); r2 class 1, scores (0.2, 0.6); r3 background, (0.4, 0.1).
        Positive candidates (RoI, its class): 0.8, 0.6. Negatives: the 4 other pairs 0.3, 0.2, 0.4, 0.1.
    image 2 (no objects, one RoI, padded with an ignored row): r4 background, scores (0.6, 0.2).
        No positive: P_+ = 1 (the authors' fallback). Negatives 0.6, 0.2.

With the defaults (λ_+ = 1, λ_- = 0.1 / ln 3.5, γ = 0.5, L = 6, τ = 4, one ranking per image):
    q_- ∝ exp(p / λ_-) = 3.5^(10 p), q_+ ∝ exp(-p / λ_+).
    image 1: P_+ = (0.8 e^-0.8 + 0.6 e^-0.6) / (e^-0.8 + e^-0.6)
             P_- = (0.3·3.5³ + 0.2·3.5² + 0.4·3.5⁴ + 0.1·3.5) / (3.5³ + 3.5² + 3.5⁴ + 3.5)
    image 2: P_+ = 1, P_- = (0.6·3.5⁶ + 0.2·3.5²) / (3.5⁶ + 3.5²)
    ℓ(z) = log(1 + e^(6z)) / 6 of z = P_- - P_+ + 0.5;  loss_cls = 4 (ℓ_1 + ℓ_2) / 2.
"""
import math

import pytest
import torch

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 2
SIZE = (320, 320)
PROBS = [[0.8, 0.3], [0.2, 0.6], [0.4, 0.1], [0.6, 0.2]]
LABELS = [[0, 1, 2], [2]]
NEG_LAMBDA = 0.1 / math.log(3.5)


def ell(z, scale=6.0):
    return math.log1p(math.exp(scale * z)) / scale


def by_hand_default():
    """loss_cls of the crafted batch, as the module docstring derives it."""
    pos = (0.8 * math.exp(-0.8) + 0.6 * math.exp(-0.6)) / (math.exp(-0.8) + math.exp(-0.6))
    w = {p: 3.5 ** (10 * p) for p in (0.3, 0.2, 0.4, 0.1, 0.6)}
    neg1 = sum(p * w[p] for p in (0.3, 0.2, 0.4, 0.1)) / sum(w[p] for p in (0.3, 0.2, 0.4, 0.1))
    neg2 = (0.6 * w[0.6] + 0.2 * w[0.2]) / (w[0.6] + w[0.2])
    return 4.0 * (ell(neg1 - pos + 0.5) + ell(neg2 - 1.0 + 0.5)) / 2


def predictor(**kwargs):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from drloss import DRFastRCNNOutputLayers

    torch.manual_seed(0)
    return DRFastRCNNOutputLayers(
        ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES,
        **kwargs,
    )  # fmt: skip


def crafted():
    """(scores (4, 3) leaf logits, deltas (4, 8), proposals of the two images)."""
    from detectron2.structures import Boxes, Instances

    p = torch.tensor(PROBS, dtype=torch.float64)
    scores = torch.cat([torch.log(p / (1 - p)), torch.full((4, 1), 5.0, dtype=torch.float64)], dim=1)
    scores = scores.float().requires_grad_()
    deltas = (torch.arange(32, dtype=torch.float32).reshape(4, 8) / 40 - 0.4).requires_grad_()
    proposals = []
    boxes = [[[0, 0, 90, 100], [200, 200, 270, 300], [120, 0, 160, 40]], [[10, 10, 50, 50]]]
    for labels, image_boxes in zip(LABELS, boxes):
        inst = Instances(SIZE)
        inst.proposal_boxes = Boxes(torch.tensor(image_boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(labels)
        if any(c < NUM_CLASSES for c in labels):
            inst.gt_boxes = Boxes(torch.tensor([[0, 0, 100, 100], [200, 200, 300, 300], [0, 0, 100, 100]][: len(labels)],
                                               dtype=torch.float32))  # fmt: skip
        proposals.append(inst)
    return scores, deltas, proposals


def losses_of(model, scores=None, deltas=None, proposals=None):
    from detectron2.utils.events import EventStorage

    if scores is None:
        scores, deltas, proposals = crafted()
    with EventStorage() as storage:
        losses = model.losses((scores, deltas), proposals)
    return losses, {k: v[0] for k, v in storage.latest().items()}


def test_loss_on_crafted_rois_by_hand():
    losses, scalars = losses_of(predictor())
    assert losses["loss_cls"].item() == pytest.approx(by_hand_default(), rel=1e-5)
    # the signals: P_+ averaged over the one image with positives, P_- over both images
    pos = (0.8 * math.exp(-0.8) + 0.6 * math.exp(-0.6)) / (math.exp(-0.8) + math.exp(-0.6))
    assert scalars["drloss/expected_pos"] == pytest.approx(pos, rel=1e-5)
    assert scalars["drloss/mean_pos"] == pytest.approx(0.7, rel=1e-5)
    assert scalars["drloss/mean_neg"] == pytest.approx((0.25 + 0.4) / 2, rel=1e-5)
    assert scalars["drloss/groups_without_pos"] == 0.5
    assert scalars["drloss/margin_violation"] == 1.0  # P_- ≈ 0.35 > P_+ ≈ 0.70 - 0.5
    # accuracy at sigmoid 0.5: r1 -> class 0, r2 -> class 1, r3 -> background (right); r4 -> class 0 (0.6, wrong)
    assert scalars["fast_rcnn/cls_accuracy"] == 0.75 and scalars["fast_rcnn/fg_cls_accuracy"] == 1.0
    assert scalars["fast_rcnn/false_negative"] == 0.0


def test_loss_weight_scales_the_dr_loss_and_the_box_loss_is_detectron2s():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers

    losses, _ = losses_of(predictor(loss_weight={"loss_cls": 0.5, "loss_box_reg": 2.0}))
    assert losses["loss_cls"].item() == pytest.approx(0.5 * by_hand_default(), rel=1e-5)
    plain = FastRCNNOutputLayers(ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                 num_classes=NUM_CLASSES, loss_weight={"loss_cls": 1.0, "loss_box_reg": 2.0})
    base, _ = losses_of(plain)
    assert losses["loss_box_reg"].item() == pytest.approx(base["loss_box_reg"].item(), rel=1e-6)
    assert losses["loss_box_reg"].item() > 0


def test_gradient_reaches_the_class_logits_only():
    """One image: r1 class 0 (0.8, 0.3), r3 background (0.4, 0.1). With one positive P_+ = p = 0.8, so
    d loss / d logit(r1, 0) = -τ ℓ'(z) σ'(x) = -4 · sigmoid(6 z) · 0.8 · 0.2 (N = 1 image)."""
    scores, deltas, proposals = crafted()
    keep = torch.tensor([0, 2])
    leaf = scores.detach()[keep].clone().requires_grad_()
    single = proposals[0][keep]
    losses, _ = losses_of(predictor(), leaf, deltas.detach()[keep], [single])
    losses["loss_cls"].backward()
    grad = leaf.grad
    assert torch.all(grad[:, -1] == 0)  # the background column takes no part
    assert torch.all(grad[:, :NUM_CLASSES] != 0)
    w = {p: 3.5 ** (10 * p) for p in (0.3, 0.4, 0.1)}
    z = sum(p * v for p, v in w.items()) / sum(w.values()) - 0.8 + 0.5
    assert grad[0, 0].item() == pytest.approx(-4 * (1 / (1 + math.exp(-6 * z))) * 0.8 * 0.2, rel=1e-4)
    assert grad[1, 0].item() > 0  # the hardest negative (0.4) is pushed down
    assert grad[1, 0] > grad[0, 1] > 0  # ... harder than the 0.3 one


def test_switches_change_the_loss_as_the_core_says():
    from drloss import dr_loss

    p = torch.tensor(PROBS)
    probs = torch.zeros(2, 3, 2)
    probs[0], probs[1, 0] = p[:3], p[3]
    labels = torch.tensor([[0, 1, 2], [2, -1, -1]])
    default = by_hand_default()
    for kwargs in [dict(pos_lambda=0.5), dict(neg_lambda=0.2), dict(margin=0.3), dict(logistic_scale=10.0),
                   dict(cls_loss_weight=2.0), dict(scope="batch"), dict(class_grouping="per_class")]:  # fmt: skip
        model = predictor(**kwargs)
        (key, value), = kwargs.items()
        assert getattr(model, key) == value
        losses, _ = losses_of(model)
        expected = dr_loss(probs, labels, **kwargs).loss.item()
        assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5), kwargs
        assert abs(expected - default) > 1e-4, kwargs


def test_scope_batch_by_hand():
    """scope="batch": one ranking over both images, P_+ as image 1's, P_- over its 4 and image 2's 2
    negatives; loss τ ℓ (no division by N)."""
    pos = (0.8 * math.exp(-0.8) + 0.6 * math.exp(-0.6)) / (math.exp(-0.8) + math.exp(-0.6))
    negs = (0.3, 0.2, 0.4, 0.1, 0.6, 0.2)
    neg = sum(p * 3.5 ** (10 * p) for p in negs) / sum(3.5 ** (10 * p) for p in negs)
    losses, _ = losses_of(predictor(scope="batch"))
    assert losses["loss_cls"].item() == pytest.approx(4 * ell(neg - pos + 0.5), rel=1e-5)


def test_inference_scores_are_the_sigmoid_scores_the_loss_ranks():
    scores, deltas, proposals = crafted()
    model = predictor()
    assert model.use_sigmoid_ce
    probs = torch.cat(model.predict_probs((scores.detach(), deltas.detach()), proposals))
    assert torch.allclose(probs[:, :NUM_CLASSES], torch.tensor(PROBS), atol=1e-6)
    model.test_score_thresh = 0.5
    instances, _ = model.inference((scores.detach(), deltas.detach()), proposals)
    # above 0.5: r1 class 0 (0.8), r2 class 1 (0.6) in image 1; r4 class 0 (0.6) in image 2
    assert sorted(instances[0].scores.tolist()) == pytest.approx([0.6, 0.8], abs=1e-6)
    assert sorted(zip(instances[0].scores.tolist(), instances[0].pred_classes.tolist()))[1][1] == 0
    assert instances[1].scores.tolist() == pytest.approx([0.6], abs=1e-6)


def heads(box_predictor=None, **kwargs):
    """A small untrained DRROIHeads (one 8-channel level at stride 4, a 16-d fc head), 64 RoIs per image."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    from drloss import DRROIHeads

    model = predictor(**kwargs) if box_predictor is None else box_predictor
    return DRROIHeads(
        num_classes=NUM_CLASSES, batch_size_per_image=64, positive_fraction=0.25, proposal_append_gt=True,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False), box_in_features=["p2"],
        box_pooler=ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=model,
    )  # fmt: skip


def heads_inputs(with_objects):
    from detectron2.structures import Boxes, ImageList, Instances

    props = Instances(SIZE)
    props.proposal_boxes = Boxes(torch.tensor([[0, 0, 90, 100], [120, 0, 160, 40], [10, 150, 60, 200.0]]))
    props.objectness_logits = torch.zeros(3)
    target = Instances(SIZE)
    target.gt_boxes = Boxes(torch.tensor([[0, 0, 100, 100.0]]) if with_objects else torch.zeros(0, 4))
    target.gt_classes = torch.tensor([1] if with_objects else [], dtype=torch.long)
    feats = {"p2": torch.rand(1, 8, SIZE[0] // 4, SIZE[1] // 4, generator=torch.Generator().manual_seed(1))}
    return ImageList(torch.zeros(1, 3, *SIZE), [SIZE]), feats, [props], [target]


@pytest.mark.parametrize("with_objects", [False, True])
def test_heads_train_without_nan_and_an_image_without_objects_still_trains_the_classifier(with_objects):
    from detectron2.utils.events import EventStorage

    model = heads()
    model.train()
    images, feats, props, targets = heads_inputs(with_objects)
    with EventStorage() as storage:
        _, losses = model(images, feats, props, targets)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_cls"].item() > 0
    if with_objects:
        assert losses["loss_box_reg"].item() > 0 and "drloss/expected_pos" in storage.latest()
    else:
        # no positive: box loss exactly 0, P_+ = 1, the negatives still get a gradient
        assert losses["loss_box_reg"].item() == 0 and storage.latest()["drloss/groups_without_pos"][0] == 1.0
        assert "drloss/expected_pos" not in storage.latest()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.box_predictor.cls_score.weight.grad[:NUM_CLASSES].abs().sum() > 0


def test_heads_inference_returns_sigmoid_scores():
    model = heads(test_score_thresh=0.0)
    model.eval()
    images, feats, props, _ = heads_inputs(True)
    with torch.no_grad():
        results, _ = model(images, feats, props)
        logits, _ = model.box_predictor(model.box_head(model.box_pooler([feats["p2"]], [props[0].proposal_boxes])))
    expected = torch.sigmoid(logits[:, :NUM_CLASSES]).flatten()
    assert len(results[0]) > 0
    for score in results[0].scores:
        assert torch.isclose(expected, score, atol=1e-6).any()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(use_sigmoid_ce=False), "use_sigmoid_ce=False"),
        (dict(use_fed_loss=True), "use_fed_loss=True"),
        (dict(margin=-0.1), "margin=-0.1"),
        (dict(neg_lambda=0.0), "neg_lambda=0.0"),
        (dict(scope="gpu"), "scope='gpu'"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor(**kwargs)


def test_heads_refuse_a_softmax_predictor_and_declare_the_hyperparameters():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers

    from drloss import DRROIHeads

    plain = FastRCNNOutputLayers(ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0,) * 4),
                                 num_classes=NUM_CLASSES)  # fmt: skip
    with pytest.raises(ValueError, match="FastRCNNOutputLayers"):
        heads(box_predictor=plain)
    assert [(h.name, h.default) for h in DRROIHeads.HYPERPARAMETERS] == [
        ("batch_size_per_image", 512), ("positive_fraction", 0.25), ("box_predictor.pos_lambda", 1.0),
        ("box_predictor.neg_lambda", NEG_LAMBDA), ("box_predictor.margin", 0.5),
        ("box_predictor.logistic_scale", 6.0)]  # fmt: skip
