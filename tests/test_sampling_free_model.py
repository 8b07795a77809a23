"""RetinaNetSamplingFree on a tiny model, CPU, in seconds: the first-batch prior, the guided loss inside the
model, the class-adaptive thresholds at inference, images without objects, and every switch.

Fresh models: detectron2's positive-count EMA starts at 100, so the first step divides both losses by
0.9 * 100 + 0.1 * max(num_pos, 1).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from tiny_retinanet import tiny_retinanet_parts

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 3


def tiny_model(**kwargs):
    """RetinaNetSamplingFree on :func:`tiny_retinanet_parts` (3 classes)."""
    from sampling_free import RetinaNetSamplingFree

    return RetinaNetSamplingFree(**tiny_retinanet_parts(NUM_CLASSES), **kwargs)


def images(classes_per_image=((2,), (0, 1)), seed=0, size=(200, 250)):
    """Random images; classes_per_image gives each image's GT classes (empty tuple = no object)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for classes in classes_per_image:
        inst = Instances(size)
        boxes = [[20.0 + 60 * i, 30.0 + 40 * i, 90.0 + 60 * i, 120.0 + 40 * i] for i in range(len(classes))]
        inst.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        inst.gt_classes = torch.tensor(classes, dtype=torch.long)
        batch.append({"image": torch.rand(3, *size, generator=g) * 255, "instances": inst})
    return batch


def train_step(model, batch):
    """One forward in training mode; returns the losses and the scalars written to EventStorage."""
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return losses, scalars


@torch.no_grad()
def raw(model, batch):
    """(N, R, K) class logits and (N, R) anchor labels, computed outside model.losses."""
    from detectron2.layers import cat

    imgs = model.preprocess_image(batch)
    feats = model.backbone(imgs.tensor)
    feats = [feats[f] for f in model.head_in_features]
    logits, _ = model.head(feats)
    k = model.num_classes

    def flat(x):  # (N, A*K, H, W) -> (N, H*W*A, K), detectron2's anchor order
        n, _, h, w = x.shape
        return x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)

    anchors = model.anchor_generator(feats)
    gt_labels, _ = model.label_anchors(anchors, [b["instances"] for b in batch])
    return cat([flat(x) for x in logits], 1), torch.stack(gt_labels)


def test_first_batch_measures_the_prior_and_its_loss_uses_the_new_bias():
    model = tiny_model()
    batch = images()
    assert model.prior.item() == 0.0
    assert torch.allclose(model.head.cls_score.bias, torch.full((9,), -math.log(99.0)))  # head default, 0.01
    logits_before, labels = raw(model, batch)
    valid, pos = labels >= 0, (labels >= 0) & (labels < NUM_CLASSES)
    n, n_f = int(valid.sum()), int(pos.sum())
    assert n_f > 0
    losses, scalars = train_step(model, batch)
    # Eq. 4: pi = N_f / (N * C); bias = -log(N * C / N_f - 1).
    pi = n_f / (n * NUM_CLASSES)
    assert model.prior.item() == pytest.approx(pi, rel=1e-6)
    assert scalars["sampling_free/prior"] == pytest.approx(pi)
    assert torch.allclose(model.head.cls_score.bias, torch.full((9,), -math.log(n * NUM_CLASSES / n_f - 1)))
    # The first loss already uses the new bias: logits shift by b_new - b_old = log(99) - log(NC/N_f - 1).
    shift = math.log(99.0) - math.log(n * NUM_CLASSES / n_f - 1)
    target = F.one_hot(labels[valid], NUM_CLASSES + 1)[:, :-1].float()
    bce = F.binary_cross_entropy_with_logits(logits_before[valid] + shift, target, reduction="sum").item()
    normalizer = 0.9 * 100 + 0.1 * n_f
    assert scalars["sampling_free/loss_cls_unscaled"] == pytest.approx(bce / normalizer, rel=1e-4)
    logits_after, _ = raw(model, batch)
    assert torch.allclose(logits_after, logits_before + shift, atol=1e-5)
    # Measured once: a second batch leaves the bias alone.
    bias = model.head.cls_score.bias.detach().clone()
    _, scalars = train_step(model, images(((1,), (1, 2, 0)), seed=1))
    assert torch.equal(model.head.cls_score.bias, bias) and "sampling_free/prior" not in scalars


def test_given_prior_sets_the_bias_at_construction():
    model = tiny_model(prior_prob=1e-5)
    assert model.prior.item() == pytest.approx(1e-5)
    assert torch.allclose(model.head.cls_score.bias, torch.full((9,), -math.log((1 - 1e-5) / 1e-5)))
    _, scalars = train_step(model, images())
    assert torch.allclose(model.head.cls_score.bias, torch.full((9,), -math.log((1 - 1e-5) / 1e-5)))
    assert "sampling_free/prior" not in scalars


def test_a_batch_without_objects_defers_the_prior_and_gives_finite_zero_losses():
    model = tiny_model()
    losses, scalars = train_step(model, images(((), ())))
    # L_reg = 0 without foreground, so r = 0 and r * L_cls = 0; L_cls itself is finite and positive.
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_cls"].item() == 0.0
    assert scalars["sampling_free/guided_ratio"] == 0.0 and scalars["sampling_free/loss_cls_unscaled"] > 0
    assert all(math.isfinite(v) for v in scalars.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.prior.item() == 0.0  # nothing to measure: pi* would be 0
    assert model.anchor_counts[:NUM_CLASSES].sum() == 0 and model.anchor_counts[-1] > 0
    # The next batch with objects initialises it.
    train_step(model, images())
    assert model.prior.item() > 0


def test_an_image_without_objects_next_to_one_with_objects():
    model = tiny_model()
    losses, _ = train_step(model, images(((), (1,))))
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_guided_loss_in_the_model_scales_the_class_gradient_by_r_only():
    batch = images()
    paper, off = tiny_model(prior_prob=1e-3), tiny_model(prior_prob=1e-3, guided_loss="off")
    lp, sp = train_step(paper, batch)
    lo, so = train_step(off, batch)
    r = sp["sampling_free/guided_ratio"]
    # r = L_reg / L_cls of the same batch; r * L_cls has the value of L_reg; "off" returns L_cls as is.
    assert r == pytest.approx(sp["sampling_free/loss_box_reg_unscaled"] / sp["sampling_free/loss_cls_unscaled"])
    assert lp["loss_cls"].item() == pytest.approx(lp["loss_box_reg"].item(), rel=1e-6)
    assert lo["loss_cls"].item() == pytest.approx(sp["sampling_free/loss_cls_unscaled"], rel=1e-6)
    assert so["sampling_free/guided_ratio"] == 1.0
    # d loss_cls / d theta = r * d L_cls / d theta, and nothing reaches the box branch through r.
    lp["loss_cls"].backward()
    lo["loss_cls"].backward()
    assert torch.allclose(paper.head.cls_score.weight.grad, r * off.head.cls_score.weight.grad, atol=1e-9, rtol=1e-5)
    assert paper.head.bbox_pred.weight.grad is None


def test_official_mode_freezes_r_and_adds_the_uncertainty_loss():
    model = tiny_model(prior_prob=1e-5, guided_loss="official", official_warmup_iters=1)
    losses, scalars = train_step(model, images())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_sigma"}
    r = scalars["sampling_free/guided_ratio"]
    # sigma = 1: each loss halved, log(sigma_cls * sigma_reg) = 0.
    assert losses["loss_cls"].item() == pytest.approx(0.5 * scalars["sampling_free/loss_box_reg_unscaled"], rel=1e-5)
    assert losses["loss_sigma"].item() == 0.0
    assert scalars["sampling_free/sigma_cls"] == 1.0
    _, scalars = train_step(model, images(((1,), (1, 2, 0)), seed=1))
    assert scalars["sampling_free/guided_ratio"] == r  # frozen after the warm-up
    current = scalars["sampling_free/loss_box_reg_unscaled"] / scalars["sampling_free/loss_cls_unscaled"]
    assert r != pytest.approx(current)


def test_anchor_counts_accumulate_over_training_batches():
    model = tiny_model()
    batches = [images(), images(((1,), ()), seed=1)]
    expected = torch.zeros(NUM_CLASSES + 1, dtype=torch.long)
    for b in batches:
        _, labels = raw(model, b)
        expected += torch.bincount(labels[labels >= 0], minlength=NUM_CLASSES + 1)
        train_step(model, b)
    assert torch.equal(model.anchor_counts, expected)


def test_class_adaptive_thresholds_filter_each_class_at_inference():
    from detectron2.structures import Boxes

    model = tiny_model(test_score_thresh=0.05)
    model.anchor_counts.copy_(torch.tensor([6, 3, 1, 990]))  # theta = (0.006, 0.003, 0.001), Eq. 7
    assert torch.allclose(model.score_thresholds(), torch.tensor([0.006, 0.003, 0.001]))
    anchors = [Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 80.0, 90.0]]))]
    # Anchor 0: class 0 at 0.005 (< 0.006, dropped), class 2 at 0.002 (> 0.001, kept);
    # anchor 1: class 1 at 0.004 (> 0.003, kept). A fixed 0.05 keeps nothing, a fixed 0.001 keeps all three.
    scores = [torch.tensor([[0.005, 0.0, 0.002], [0.0, 0.004, 0.0]])]
    deltas = [torch.zeros(2, 4)]
    out = model.inference_single_image(anchors, scores, deltas, (100, 100))
    kept = sorted(zip(out.pred_classes.tolist(), out.scores.tolist()))
    assert kept == [(1, pytest.approx(0.004)), (2, pytest.approx(0.002))]
    model.class_adaptive_threshold = False
    assert model.score_thresholds() == 0.05
    assert len(model.inference_single_image(anchors, scores, deltas, (100, 100))) == 0
    model.test_score_thresh = 0.001
    assert len(model.inference_single_image(anchors, scores, deltas, (100, 100))) == 3


def test_threshold_fallbacks_without_statistics():
    # Never trained, prior known: Eq. 7 with equal class frequencies, theta_j = pi.
    assert torch.allclose(tiny_model(prior_prob=1e-3).score_thresholds(), torch.full((NUM_CLASSES,), 1e-3))
    # Neither statistics nor prior: the fixed threshold.
    assert tiny_model(test_score_thresh=0.05).score_thresholds() == 0.05


def test_training_then_inference_uses_the_measured_thresholds():
    model = tiny_model()
    batch = images()
    train_step(model, batch)
    counts = model.anchor_counts.double()
    expected = counts[:NUM_CLASSES] / counts.sum()  # theta_j = N_j / N
    assert torch.allclose(model.score_thresholds().double(), expected, rtol=1e-6)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2
    for r in out:
        inst = r["instances"]
        thr = expected.float()[inst.pred_classes]
        assert (inst.scores > thr).all()


def test_invalid_switches_raise():
    with pytest.raises(ValueError, match="guided_loss"):
        tiny_model(guided_loss="focal")
    with pytest.raises(ValueError, match="prior_prob"):
        tiny_model(prior_prob=0.0)
    with pytest.raises(ValueError, match="warmup_iters"):
        tiny_model(guided_loss="official", official_warmup_iters=0)


def test_declares_no_hyperparameters_and_no_focal_parameters():
    from d2imbalance.analysis.hyperparameters import declared_hyperparameters
    from sampling_free import RetinaNetSamplingFree

    assert declared_hyperparameters(RetinaNetSamplingFree) == ()
    model = tiny_model()
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
    assert set(model.state_dict()) >= {"prior", "anchor_counts"}  # saved with the checkpoint
