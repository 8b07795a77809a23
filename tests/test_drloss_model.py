"""RetinaNetDRLoss on a tiny RetinaNet, CPU, in seconds: its losses against an independent computation,
every constructor switch reaching the loss, images without objects, EventStorage signals."""
import inspect

import pytest
import torch

from test_drloss_core import ref_loss
from tiny_retinanet import tiny_retinanet_parts, train_step

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 3


def tiny_parts():
    """:func:`tiny_retinanet_parts` with prior 0.5 (every score starts near 0.5)."""
    return tiny_retinanet_parts(NUM_CLASSES, prior_prob=0.5)


def tiny_dr(spread=False, **kwargs):
    """RetinaNetDRLoss on :func:`tiny_parts`. With prior 0.5 every score starts near 0.5, where q_+ and
    q_- are almost uniform whatever λ; ``spread`` gives the class scores O(1) logits so that they differ."""
    from drloss import RetinaNetDRLoss

    model = RetinaNetDRLoss(**tiny_parts(), **kwargs)
    if spread:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            score = model.head.cls_score
            score.weight.copy_(torch.randn(score.weight.shape, generator=g) * 0.3)
            score.bias.copy_(torch.randn(score.bias.shape, generator=g))
    return model


def images(classes_per_image=((0, 2), (1,)), seed=0, size=(160, 200)):
    """Random images; classes_per_image gives each image's ground-truth classes (empty: no object)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for classes in classes_per_image:
        h, w = size
        inst = Instances((h, w))
        xy = torch.rand(len(classes), 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = 30 + torch.rand(len(classes), 2, generator=g) * 60
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.tensor(classes, dtype=torch.long)
        batch.append({"image": torch.rand(3, h, w, generator=g) * 255, "instances": inst})
    return batch


@torch.no_grad()
def raw_scores(model, batch):
    """(N, R, K) probabilities and (N, R) anchor labels, computed outside model.losses."""
    from detectron2.layers import cat

    imgs = model.preprocess_image(batch)
    feats = model.backbone(imgs.tensor)
    feats = [feats[f] for f in model.head_in_features]
    logits, _ = model._transpose_dense_predictions(model.head(feats), [model.num_classes, 4])
    gt_labels, _ = model.label_anchors(model.anchor_generator(feats), [b["instances"] for b in batch])
    return torch.sigmoid(cat(logits, dim=1)).double(), torch.stack(gt_labels)


def test_cls_loss_matches_the_reference():
    """loss_cls = τ · mean over images of ℓ(P_- - P_+ + γ) (the loop reference of test_drloss_core)."""
    model = tiny_dr(spread=True)
    batch = images()
    probs, labels = raw_scores(model, batch)
    assert (labels == -1).any() and ((labels >= 0) & (labels < NUM_CLASSES)).sum() > 2
    losses, _ = train_step(model, batch)
    assert losses["loss_cls"].item() == pytest.approx(ref_loss(probs, labels).item(), rel=1e-5)


@pytest.mark.parametrize("box_kwargs", [{}, {"box_reg_loss_type": "giou"}, {"smooth_l1_beta": 0.5}])
def test_box_loss_is_retinanets(box_kwargs):
    """loss_box_reg is exactly RetinaNet's with the same weights and box options, over two steps: a batch
    without objects (the EMA normaliser still moves: max(count, 1) = 1), then one with objects."""
    from detectron2.modeling.meta_arch.retinanet import RetinaNet

    model = tiny_dr(**box_kwargs)
    retinanet = RetinaNet(**tiny_parts(), **box_kwargs)
    retinanet.load_state_dict(model.state_dict())
    for batch in (images(((), ())), images()):
        ours, theirs = train_step(model, batch)[0], train_step(retinanet, batch)[0]
        assert ours["loss_box_reg"].item() == pytest.approx(theirs["loss_box_reg"].item(), rel=1e-6)
    assert ours["loss_box_reg"].item() > 0
    assert model.loss_normalizer == pytest.approx(retinanet.loss_normalizer)


@pytest.mark.parametrize(
    "switch,value,ref_kwargs",
    [
        ("pos_lambda", 0.2, dict(pos_lambda=0.2)),
        ("neg_lambda", 0.5, dict(neg_lambda=0.5)),
        ("margin", 0.8, dict(margin=0.8)),
        ("logistic_scale", 2.0, dict(scale=2.0)),
        ("cls_loss_weight", 1.0, dict(tau=1.0)),
        ("scope", "batch", dict(scope="batch")),
        ("class_grouping", "per_class", dict(class_grouping="per_class")),
    ],
)
def test_every_switch_reaches_the_loss(switch, value, ref_kwargs):
    """Each constructor argument is stored on the model and changes loss_cls to the reference value
    computed with it (and away from the default's)."""
    batch = images()
    default = tiny_dr(spread=True)
    model = tiny_dr(spread=True, **{switch: value})
    assert getattr(model, switch) == value
    probs, labels = raw_scores(model, batch)
    expected = ref_loss(probs, labels, **ref_kwargs).item()
    got = train_step(model, batch)[0]["loss_cls"].item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(got - train_step(default, batch)[0]["loss_cls"].item()) > 1e-3 * abs(got)


def test_cls_loss_weight_scales_exactly():
    batch = images()
    one = train_step(tiny_dr(cls_loss_weight=1.0), batch)[0]["loss_cls"].item()
    assert train_step(tiny_dr(), batch)[0]["loss_cls"].item() == pytest.approx(4 * one, rel=1e-6)


def test_event_storage_signals():
    """The drloss/* scalars are those of the batch's groups (computed from the raw scores), and
    num_pos_anchors is RetinaNet's per-image count."""
    from drloss import dr_loss, dr_statistics

    model = tiny_dr()
    batch = images()
    probs, labels = raw_scores(model, batch)
    expected = dr_statistics(dr_loss(probs, labels))
    _, scalars = train_step(model, batch)
    for name, value in expected.items():
        assert scalars[f"drloss/{name}"] == pytest.approx(value, rel=1e-5), name
    assert {"drloss/expected_pos", "drloss/expected_neg", "drloss/margin_violation"} <= set(scalars)
    num_pos = ((labels >= 0) & (labels < NUM_CLASSES)).sum().item()
    assert scalars["num_pos_anchors"] == num_pos / 2
    # Prior 0.5: every score starts near 0.5, the margin 0.5 is violated in both images.
    assert scalars["drloss/margin_violation"] == 1.0
    assert 0.4 < scalars["drloss/expected_neg"] < 0.6


def test_image_without_objects_finite_losses_and_gradients():
    """One image with an object and one without; then a batch without any object: finite losses and
    gradients, box loss exactly 0 without objects, no positive-set scalar logged (not NaN)."""
    model = tiny_dr()
    losses, scalars = train_step(model, images(((0,), ())))
    assert all(torch.isfinite(v) for v in losses.values())
    assert scalars["drloss/groups_without_pos"] == 0.5
    model = tiny_dr()
    probs, labels = raw_scores(model, images(((), ())))
    losses, scalars = train_step(model, images(((), ())))
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_cls"].item() == pytest.approx(ref_loss(probs, labels).item(), rel=1e-5)
    assert losses["loss_cls"].item() > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.head.cls_score.bias.grad.abs().sum() > 0  # background-only images still train the classifier
    assert "drloss/expected_pos" not in scalars and "drloss/margin_violation" not in scalars
    assert all(v == v for v in scalars.values())  # no NaN


def test_inference_is_retinanets():
    from detectron2.modeling.meta_arch.retinanet import RetinaNet

    model = tiny_dr()
    retinanet = RetinaNet(**tiny_parts())
    retinanet.load_state_dict(model.state_dict())
    batch = images()
    model.eval(), retinanet.eval()
    with torch.no_grad():
        ours, theirs = model(batch), retinanet(batch)
    for a, b in zip(ours, theirs):
        assert torch.equal(a["instances"].scores, b["instances"].scores)
        assert len(a["instances"]) > 0


def test_declarations_and_constructor():
    from d2imbalance.analysis.hyperparameters import declared_hyperparameters
    from drloss import RetinaNetDRLoss

    declared = declared_hyperparameters(RetinaNetDRLoss)
    assert [h.name for h in declared] == ["pos_lambda", "neg_lambda", "margin", "logistic_scale"]
    params = inspect.signature(RetinaNetDRLoss.__init__).parameters
    for h in declared:
        assert params[h.name].default == h.default
    model = tiny_dr()
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
    with pytest.raises(ValueError, match="scope='gpu'"):
        tiny_dr(scope="gpu")
    with pytest.raises(ValueError, match="neg_lambda=0"):
        tiny_dr(neg_lambda=0)
