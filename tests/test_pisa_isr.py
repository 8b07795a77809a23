"""pisa.isr and pisa.carl without detectron2: hierarchical local ranks, importance weights, the
renormalisation, the NMS clusters of Score-HLR, the authors' Score-HLR sampler and CARL, each against
numbers worked out by hand in the docstrings.

The crafted positives (IoUs consistent with the boxes):
    object A = (0, 0, 100, 100): a1 = (0, 0, 100, 90) IoU 0.9, a2 = (0, 0, 100, 85) IoU 0.85,
                                 a3 = (0, 35, 100, 125) IoU 6500 / 12500 = 0.52
    object B = (200, 200, 300, 300): b1 = (200, 200, 300, 280) IoU 0.8, b2 = (200, 200, 300, 270) IoU 0.7
Overlaps among them: IoU(a1, a2) = 8500 / 9000 = 0.94, IoU(a1, a3) = 5500 / 12500 = 0.44,
IoU(a2, a3) = 5000 / 12500 = 0.4, IoU(b1, b2) = 7000 / 8000 = 0.875. They are given in the scrambled
order b2, a1, a3, a2, b1.
"""
import subprocess
import sys

import pytest
import torch

from pisa import (
    CARL_HYPERPARAMETERS,
    HYPERPARAMETERS,
    aligned_iou,
    carl_loss,
    carl_weights,
    check_carl_options,
    check_isr_options,
    group_extremes,
    hierarchical_local_rank,
    importance_weights,
    isr_negative_weights,
    isr_positive_weights,
    nms_clusters,
    nms_survivors,
    rank_importance,
    renormalize,
    score_hlr_sample,
    weight_scalars,
)

A1, A2, A3 = [0.0, 0.0, 100.0, 90.0], [0.0, 0.0, 100.0, 85.0], [0.0, 35.0, 100.0, 125.0]
B1, B2 = [200.0, 200.0, 300.0, 280.0], [200.0, 200.0, 300.0, 270.0]
BOXES = torch.tensor([B2, A1, A3, A2, B1])
IOUS = torch.tensor([0.7, 0.9, 0.52, 0.85, 0.8])
OBJECTS = torch.tensor([1, 0, 0, 0, 1])
ONE_CLASS = torch.zeros(5, dtype=torch.long)
LOSSES = torch.tensor([0.5, 0.1, 1.0, 0.4, 0.2])


def test_the_crafted_ious_are_those_of_the_boxes():
    gts = torch.tensor([[200.0, 200, 300, 300], [0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100], [200, 200, 300, 300]])
    assert torch.allclose(aligned_iou(BOXES, gts), IOUS)
    assert aligned_iou(torch.zeros(1, 4), torch.zeros(1, 4)).tolist() == [0.0]  # empty boxes: 0, not NaN


def test_iou_hlr_by_hand():
    """Local ranks: A: a1 0, a2 1, a3 2; B: b1 0, b2 1. Then all first-ranked by IoU: a1 (0.9) 0, b1 (0.8) 1;
    all second-ranked: a2 (0.85) 2, b2 (0.7) 3; third: a3 4. In the order b2, a1, a3, a2, b1: [3, 0, 4, 2, 1].
    A plain sort by IoU would put a2 (0.85) second, before B's best: [3, 0, 4, 1, 2]."""
    hlr, local = hierarchical_local_rank(IOUS, OBJECTS, ONE_CLASS)
    assert local.tolist() == [1, 0, 2, 1, 0]
    assert hlr.tolist() == [3, 0, 4, 2, 1]
    plain, _ = hierarchical_local_rank(IOUS, torch.arange(5), ONE_CLASS)  # every sample its own group
    assert plain.tolist() == [3, 0, 4, 1, 2]


def test_iou_hlr_is_per_class():
    """A of class 0, B of class 1: each class ranks alone: A: a1 0, a2 1, a3 2; B: b1 0, b2 1. The same
    rank in two classes has the same importance: n_max = 3, u = (3 - r) / 3."""
    classes = torch.tensor([1, 0, 0, 0, 1])
    hlr, _ = hierarchical_local_rank(IOUS, OBJECTS, classes)
    assert hlr.tolist() == [1, 0, 2, 1, 0]
    assert torch.allclose(rank_importance(hlr, classes), torch.tensor([2 / 3, 1.0, 1 / 3, 2 / 3, 1.0]))


def test_nms_among_the_positives_changes_the_ranks():
    """NMS at 0.5 inside each object, by IoU with it: a1 keeps, suppresses a2 (0.94), keeps a3 (0.44 with a1);
    b1 keeps, suppresses b2 (0.875). Survivors first: A: a1 0, a3 1, a2 2; B: b1 0, b2 1.
    HLR: a1 0, b1 1; then b2 (0.7) 2 before a3 (0.52) 3; then a2 4. Without NMS: [3, 0, 4, 2, 1]."""
    survivors = nms_survivors(BOXES, IOUS, OBJECTS, 0.5)
    assert survivors.tolist() == [False, True, True, False, True]
    hlr, local = hierarchical_local_rank(IOUS, OBJECTS, ONE_CLASS, survivors)
    assert local.tolist() == [1, 0, 1, 2, 0]
    assert hlr.tolist() == [2, 0, 3, 4, 1]
    # A threshold above every overlap suppresses nothing: the plain ranks again.
    assert nms_survivors(BOXES, IOUS, OBJECTS, 0.95).all()
    # Boxes of different objects never suppress each other: B's boxes moved onto a1 and a2 change nothing.
    moved = BOXES.clone()
    moved[4], moved[0] = torch.tensor(A1), torch.tensor(A2)
    assert nms_survivors(moved, IOUS, OBJECTS, 0.5).tolist() == [False, True, True, False, True]


def test_importance_weights_by_hand():
    """n_max = 5, u = (5 - r) / 5 for r = [3, 0, 4, 2, 1]: [0.4, 1, 0.2, 0.6, 0.8].
    γ = 2, β = 0: u² = [0.16, 1, 0.04, 0.36, 0.64]. γ = 1, β = 0.5: 0.5 u + 0.5 = [0.7, 1, 0.6, 0.8, 0.9].
    γ = 0.5, β = 0.36: sqrt(0.64 u + 0.36) = [sqrt(0.616), 1, sqrt(0.488), sqrt(0.744), sqrt(0.872)]."""
    u = rank_importance(torch.tensor([3, 0, 4, 2, 1]))
    assert torch.allclose(u, torch.tensor([0.4, 1.0, 0.2, 0.6, 0.8]))
    assert torch.allclose(importance_weights(u, 2.0, 0.0), torch.tensor([0.16, 1.0, 0.04, 0.36, 0.64]))
    assert torch.allclose(importance_weights(u, 1.0, 0.5), torch.tensor([0.7, 1.0, 0.6, 0.8, 0.9]))
    assert torch.allclose(importance_weights(u, 0.5, 0.36), torch.tensor([0.616, 1.0, 0.488, 0.744, 0.872]).sqrt())
    assert torch.equal(importance_weights(u, 0.0, 0.0), torch.ones(5))  # γ = 0: ISR off


def test_renormalisation_keeps_the_loss_sum():
    """Σ L = 2.2; with w = [0.16, 1, 0.04, 0.36, 0.64]: Σ w L = 0.08 + 0.1 + 0.04 + 0.144 + 0.128 = 0.492,
    so w' = w · 2.2 / 0.492 and Σ w' L = 2.2."""
    w = torch.tensor([0.16, 1.0, 0.04, 0.36, 0.64])
    scaled, ratio = renormalize(w, LOSSES)
    assert ratio == pytest.approx(2.2 / 0.492)
    assert torch.allclose(scaled, w * 2.2 / 0.492)
    assert float((scaled * LOSSES).sum()) == pytest.approx(2.2)
    # Nothing to rescale against: the weights are kept.
    assert renormalize(w, torch.zeros(5)) == (w, 1.0)
    empty = torch.zeros(0)
    assert renormalize(empty, empty)[1] == 1.0


def test_isr_positive_weights_put_it_together():
    """γ = 2, β = 0, no NMS: w = [0.16, 1, 0.04, 0.36, 0.64] · 2.2 / 0.492; with NMS (ranks [2, 0, 3, 4, 1]):
    u = [0.6, 1, 0.4, 0.2, 0.8], w = [0.36, 1, 0.16, 0.04, 0.64], Σ w L = 0.18 + 0.1 + 0.16 + 0.016 + 0.128
    = 0.584, w' = w · 2.2 / 0.584."""
    out = isr_positive_weights(IOUS, OBJECTS, ONE_CLASS, LOSSES, gamma=2.0, beta=0.0)
    assert torch.allclose(out["weights"], torch.tensor([0.16, 1.0, 0.04, 0.36, 0.64]) * 2.2 / 0.492)
    assert float(out["ratio"]) == pytest.approx(2.2 / 0.492)
    out = isr_positive_weights(IOUS, OBJECTS, ONE_CLASS, LOSSES, gamma=2.0, beta=0.0, boxes=BOXES, nms_threshold=0.5)
    assert out["hlr"].tolist() == [2, 0, 3, 4, 1]
    assert torch.allclose(out["weights"], torch.tensor([0.36, 1.0, 0.16, 0.04, 0.64]) * 2.2 / 0.584)
    assert float((out["weights"] * LOSSES).sum()) == pytest.approx(2.2)


# Negatives: two images. Image 0: n0 = (0, 0, 10, 10) score 0.6, n1 = (0, 0, 10, 9) score 0.3 (IoU 0.9
# with n0), n2 = (50, 50, 60, 60) score 0.4 (alone). Image 1: n3 = (0, 0, 10, 10) score 0.5, n4 = (0, 0,
# 10, 8) 0.45 (IoU 0.8 with n3), n5 = (0, 0, 10, 7) 0.2 (IoU 0.7 with n3, 0.875 with n4).
NEG_BOXES = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 7]])
NEG_SCORES = torch.tensor([0.6, 0.3, 0.4, 0.5, 0.45, 0.2])
NEG_IMAGES = torch.tensor([0, 0, 0, 1, 1, 1])


def test_nms_clusters_by_hand():
    """Image 0: n0 keeps and takes n1; n2 alone. Image 1: n3 keeps and takes n4 and n5 (n5 goes to n3, the
    first kept box that overlaps it, not to the suppressed n4). All in one image, n3 (0.5) would join
    n0's cluster (same box)."""
    assert nms_clusters(NEG_BOXES, NEG_SCORES, NEG_IMAGES, 0.5).tolist() == [0, 0, 2, 3, 3, 3]
    assert nms_clusters(NEG_BOXES, NEG_SCORES, torch.zeros(6, dtype=torch.long), 0.5).tolist() == [0, 0, 2, 0, 0, 0]
    # At 0.85, n3 no longer suppresses n4 (0.8); n5 (0.7 with n3) falls to the kept n4 (0.875).
    assert nms_clusters(NEG_BOXES, NEG_SCORES, NEG_IMAGES, 0.85).tolist() == [0, 0, 2, 3, 4, 4]
    assert nms_clusters(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0


def _greedy_clusters(boxes, scores, threshold):
    """Reference: greedy NMS by score, each suppressed box to the kept box that suppressed it."""
    from torchvision.ops import box_iou

    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    cluster = [-1] * len(scores)
    iou = box_iou(boxes, boxes)
    for i in order:
        if cluster[i] != -1:
            continue
        cluster[i] = i
        for j in order:
            if cluster[j] == -1 and iou[i, j] > threshold:
                cluster[j] = i
    return cluster


def test_nms_clusters_match_a_greedy_reference():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        xy = torch.rand(40, 2, generator=g) * 60
        wh = 10 + torch.rand(40, 2, generator=g) * 30
        boxes = torch.cat([xy, xy + wh], dim=1)
        scores = torch.rand(40, generator=g).round(decimals=1)  # ties too
        expected = _greedy_clusters(boxes, scores, 0.4)
        assert nms_clusters(boxes, scores, torch.zeros(40, dtype=torch.long), 0.4).tolist() == expected


def test_score_hlr_of_the_negatives_by_hand():
    """Local ranks: n0 0, n1 1, n2 0, n3 0, n4 1, n5 2. HLR: first-ranked by score n0 (0.6) 0, n3 (0.5) 1,
    n2 (0.4) 2; second n4 (0.45) 3, n1 (0.3) 4; third n5 5. n = 6: u = (6 - r) / 6, γ = 0.5, β = 0:
    w = sqrt([6, 2, 4, 5, 3, 1] / 6), then rescaled so that Σ w L = Σ L."""
    losses = torch.tensor([0.9, 0.4, 0.5, 0.7, 0.6, 0.2])
    out = isr_negative_weights(NEG_SCORES, NEG_BOXES, NEG_IMAGES, losses, gamma=0.5, beta=0.0, nms_threshold=0.5)
    assert out["local"].tolist() == [0, 1, 0, 0, 1, 2]
    assert out["hlr"].tolist() == [0, 4, 2, 1, 3, 5]
    w = (torch.tensor([6.0, 2, 4, 5, 3, 1]) / 6).sqrt()
    ratio = float(losses.sum() / (w * losses).sum())
    assert torch.allclose(out["weights"], w * ratio)
    assert float((out["weights"] * losses).sum()) == pytest.approx(float(losses.sum()))
    assert out["cluster"].tolist() == [0, 0, 2, 3, 3, 3]


def test_score_hlr_sampler_by_hand():
    """The authors' sampler on one image: c0 (0, 0, 10, 10) 0.6; c1 (0, 0, 10, 9) 0.3; c2 far 0.4; c3, c4
    invalid (0.03, 0.01 <= 0.05); c5 (0, 0, 10, 8) 0.5. Clusters: c0 {c0, c5, c1}, c2 {c2}. HLR among the 4
    valid: c0 0, c2 1, c5 2, c1 3.
    N = 5: the 4 ranked, then 1 of c3, c4 at random; m = max(5, 4) = 5, u = [1, 0.8, 0.6, 0.4] and the
    random one the smallest, 0.4; w = sqrt(u) rescaled. N = 3: c0, c2, c5; m = max(3, 4) = 4:
    u = [1, 0.75, 0.5]."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [80, 0, 90, 10], [0, 80, 10, 90], [0, 0, 10, 8]])
    scores = torch.tensor([0.6, 0.3, 0.4, 0.03, 0.01, 0.5])
    losses = torch.tensor([0.9, 0.4, 0.5, 0.05, 0.02, 0.7])
    for seed in range(3):
        idx, w = score_hlr_sample(scores, boxes, losses, 5, gamma=0.5, beta=0.0, generator=torch.Generator().manual_seed(seed))
        assert idx[:4].tolist() == [0, 2, 5, 1] and int(idx[4]) in (3, 4)
        raw = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.4]).sqrt()
        assert torch.allclose(w, raw * float(losses[idx].sum() / (raw * losses[idx]).sum()))
    idx, w = score_hlr_sample(scores, boxes, losses, 3, gamma=0.5, beta=0.0)
    raw = torch.tensor([1.0, 0.75, 0.5]).sqrt()
    assert idx.tolist() == [0, 2, 5]
    assert torch.allclose(w, raw * float(losses[idx].sum() / (raw * losses[idx]).sum()))
    # Every candidate asked for: all 6; none valid: a uniform draw, weights 1.
    assert sorted(score_hlr_sample(scores, boxes, losses, 10, gamma=0.5, beta=0.0)[0].tolist()) == list(range(6))
    idx, w = score_hlr_sample(scores * 0.01, boxes, losses, 4, gamma=0.5, beta=0.0)
    assert len(set(idx.tolist())) == 4 and torch.equal(w, torch.ones(4))
    # A higher threshold: only c0 (0.6) and c5 (0.5) are valid; c5 is in c0's cluster: ranks 0, 1.
    idx, _ = score_hlr_sample(scores, boxes, losses, 3, gamma=0.5, beta=0.0, score_threshold=0.45)
    assert idx[:2].tolist() == [0, 5] and int(idx[2]) in (1, 2, 3, 4)


def test_group_extremes_and_scalars():
    """Positives without NMS, γ = 2: tops a1 (w 1) and b1 (0.64); bottoms a3 (0.04) and b2 (0.16)."""
    out = isr_positive_weights(IOUS, OBJECTS, ONE_CLASS, LOSSES, gamma=2.0, beta=0.0)
    top, bottom = group_extremes(out["local"], OBJECTS)
    assert top.tolist() == [False, True, False, False, True] and bottom.tolist() == [True, False, True, False, False]
    r = 2.2 / 0.492
    scalars = weight_scalars("pos", out["weights"], out["local"], OBJECTS)
    assert scalars["pos_weight_top"] == pytest.approx(0.82 * r)
    assert scalars["pos_weight_bottom"] == pytest.approx(0.1 * r)
    assert scalars["pos_weight_mean"] == pytest.approx(2.2 / 5 * r)
    assert scalars["pos_weight_std"] == pytest.approx(float(out["weights"].std(unbiased=False)))
    # One sample per group: no bottom; no sample: nothing.
    assert "pos_weight_bottom" not in weight_scalars("pos", torch.ones(2), torch.zeros(2, dtype=torch.long), torch.arange(2))
    assert weight_scalars("neg", torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)) == {}


def test_carl_value_and_gradients_by_hand():
    """Scores s = [0.8, 0.4], regression losses L = [1, 3], k = 1, b = 0.2, R = 4 sampled RoIs:
    v = 0.2 + 0.8 s = [0.84, 0.52], Σ v = 1.36, c = 2 v / 1.36 = [1.2353, 0.7647] (mean 1),
    L_carl = (c · L) / 4 = 2 (0.84 + 1.56) / 1.36 / 4 = 0.88235.
    dL/dL_i = c_i / 4 = [0.30882, 0.19118].
    dL/ds_i = 2 · 0.8 (L_i Σ v - Σ v L) / (Σ v)² / 4 with Σ v L = 2.4: [-0.22491, 0.36332]: the positive that
    regresses better (L = 1) has its score pushed up by gradient descent, the other down."""
    s = torch.tensor([0.8, 0.4], requires_grad=True)
    reg = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = carl_loss(s, reg, 4, k=1.0, bias=0.2)
    assert float(loss) == pytest.approx(2 * 2.4 / 1.36 / 4)
    loss.backward()
    assert torch.allclose(reg.grad, torch.tensor([0.84, 0.52]) * 2 / 1.36 / 4)
    expected = 2 * 0.8 * (torch.tensor([1.0, 3.0]) * 1.36 - 2.4) / 1.36**2 / 4
    assert torch.allclose(s.grad, expected) and s.grad[0] < 0 < s.grad[1]
    assert torch.allclose(carl_weights(torch.tensor([0.8, 0.4]), k=1.0, bias=0.2), torch.tensor([0.84, 0.52]) * 2 / 1.36)


def test_carl_with_the_score_detached_reaches_only_the_regression():
    s = torch.tensor([0.8, 0.4], requires_grad=True)
    reg = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = carl_loss(s, reg, 4, k=1.0, bias=0.2, detach_score=True)
    assert float(loss) == pytest.approx(2 * 2.4 / 1.36 / 4)  # same value
    loss.backward()
    assert s.grad is None and torch.allclose(reg.grad, torch.tensor([0.84, 0.52]) * 2 / 1.36 / 4)


def test_carl_special_cases():
    """k = 0 or b = 1: every c = 1, the plain box loss Σ L / R. k = 2, b = 0: v = s², [0.64, 0.16],
    c = 2 v / 0.8 = [1.6, 0.4], L_carl = (1.6 + 1.2) / 4 = 0.7. No positive: 0 with a graph."""
    s, reg = torch.tensor([0.8, 0.4]), torch.tensor([1.0, 3.0])
    assert float(carl_loss(s, reg, 4, k=0.0, bias=0.2)) == pytest.approx(1.0)
    assert float(carl_loss(s, reg, 4, k=1.0, bias=1.0)) == pytest.approx(1.0)
    assert float(carl_loss(s, reg, 4, k=2.0, bias=0.0)) == pytest.approx(0.7)
    empty = torch.zeros(0, requires_grad=True)
    zero = carl_loss(empty, empty * 2, 4)
    assert float(zero) == 0.0 and zero.requires_grad
    assert float(carl_loss(s, reg, 0, k=0.0, bias=0.2)) == pytest.approx(4.0)  # normaliser at least 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(positive_gamma=-1.0), r"positive_gamma=-1.0 must be a number >= 0"),
        (dict(negative_gamma="2"), r"negative_gamma='2' must be a number >= 0"),
        (dict(positive_beta=1.5), r"positive_beta=1.5 must be in \[0, 1\]"),
        (dict(negative_beta=-0.1), r"negative_beta=-0.1 must be in \[0, 1\]"),
        (dict(positive_iou="box"), r"positive_iou='box' is not one of \('proposal', 'regressed'\)"),
        (dict(positive_nms_threshold=0.0), r"positive_nms_threshold=0.0 must be an IoU in \(0, 1\] or None"),
        (dict(negative_nms_threshold=1.5), r"negative_nms_threshold=1.5 must be an IoU in \(0, 1\]\."),
        (dict(negative_nms_threshold=None), r"negative_nms_threshold=None must be an IoU"),
    ],
)
def test_bad_isr_options_raise_naming_the_value(kwargs, message):
    options = {**dict(positive_gamma=2.0, positive_beta=0.0, negative_gamma=0.5, negative_beta=0.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        check_isr_options(**options)


def test_bad_carl_options_raise_naming_the_value():
    with pytest.raises(ValueError, match=r"carl_k=-1 must be a number >= 0"):
        check_carl_options(k=-1, bias=0.2)
    with pytest.raises(ValueError, match=r"carl_bias=2.0 must be in \[0, 1\]"):
        check_carl_options(k=1.0, bias=2.0)
    check_isr_options(positive_gamma=0, positive_beta=1, negative_gamma=0.5, negative_beta=0.0, positive_nms_threshold=None)


def test_hyperparameters_are_the_roi_sampling_plus_the_four_of_isr():
    """The ROI sampling ISR keeps (512, 0.25) and γ, β for positives and negatives: 6; the review's 4 are
    the last four. CARL adds k and b."""
    assert [(h.name, h.default) for h in HYPERPARAMETERS] == [
        ("batch_size_per_image", 512), ("positive_fraction", 0.25),
        ("box_predictor.positive_gamma", 2.0), ("box_predictor.positive_beta", 0.0),
        ("box_predictor.negative_gamma", 0.5), ("box_predictor.negative_beta", 0.0)]  # fmt: skip
    assert [(h.name, h.default) for h in CARL_HYPERPARAMETERS] == [("box_predictor.carl_k", 1.0), ("box_predictor.carl_bias", 0.2)]


def test_core_imports_without_detectron2():
    code = (
        "import sys; sys.modules['detectron2'] = None\n"
        "import pisa, pisa.isr, pisa.carl\n"
        "assert not hasattr(pisa, 'ISRROIHeads')\n"
        "try:\n"
        "    import pisa.roi_heads\n"
        "except ImportError as e:\n"
        "    print('MESSAGE', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MESSAGE pisa.roi_heads needs detectron2" in result.stdout
