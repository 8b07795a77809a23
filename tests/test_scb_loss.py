"""scale_balanced.loss: the weighted losses against their formulas, computed by hand."""
import math

import pytest
import torch

from scale_balanced.loss import (
    normalizer_value,
    weighted_bce_loss,
    weighted_box_loss,
    weighted_cross_entropy,
    weighted_focal_loss,
)


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_weighted_focal_loss_by_hand():
    """Logits [[0, 2], [-1, 0.5]], targets [[1, 0], [0, 0]], anchor weights [2, 0.5], α = 0.25, γ = 2:
    FL(x, 1) = -α(1-p)^γ ln p, FL(x, 0) = -(1-α) p^γ ln(1-p), p = σ(x).
    Row 0: FL(0, 1) = 0.25·0.25·ln 2 = 0.043322; FL(2, 0) = 0.75·0.880797²·2.126928 = 1.237559.
    Row 1: FL(-1, 0) = 0.75·0.268941²·0.313262 = 0.016994; FL(0.5, 0) = 0.75·0.622459²·0.974077 = 0.283059.
    Sum: 2·(0.043322 + 1.237559) + 0.5·(0.016994 + 0.283059) = 2.711787."""
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    weights = torch.tensor([2.0, 0.5])
    assert weighted_focal_loss(logits, targets, weights).item() == pytest.approx(2.711787, rel=1e-6)

    def fl(x, t, a, g):
        p = _sig(x)
        return -a * (1 - p) ** g * math.log(p) if t else -(1 - a) * p**g * math.log(1 - p)

    # α and γ reach the loss: α = 0.5, γ = 1.
    expected = 2 * (fl(0, 1, 0.5, 1) + fl(2, 0, 0.5, 1)) + 0.5 * (fl(-1, 0, 0.5, 1) + fl(0.5, 0, 0.5, 1))
    assert weighted_focal_loss(logits, targets, weights, alpha=0.5, gamma=1.0).item() == pytest.approx(expected, rel=1e-5)


def test_weighted_bce_by_hand():
    """Logits [0, 2, -1], targets [1, 0, 0], weights [3, 1, 0]: 3·ln 2 + ln(1 + e²) + 0 = 4.206376."""
    loss = weighted_bce_loss(torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([3.0, 1.0, 0.0]))
    assert loss.item() == pytest.approx(3 * math.log(2) + math.log(1 + math.e**2), rel=1e-6)


def test_weighted_cross_entropy_by_hand():
    """Logits [[0, 0, 0], [2, 0, 0]], classes [0, 1], weights [2, 0.5]: 2·ln 3 + 0.5·(ln(e² + 2))."""
    loss = weighted_cross_entropy(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), torch.tensor([0, 1]),
                                  torch.tensor([2.0, 0.5]))
    assert loss.item() == pytest.approx(2 * math.log(3) + 0.5 * math.log(math.e**2 + 2), rel=1e-6)
    empty = weighted_cross_entropy(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.int64),
                                   torch.zeros(0))
    assert empty.item() == 0.0 and empty.requires_grad  # still part of the graph


def test_normalizer_value():
    w = torch.tensor([3.0, 0.5, 0.25])
    assert normalizer_value(w, "num_pos") == 3.0 and normalizer_value(w, "weight_sum") == 3.75
    with pytest.raises(ValueError, match="'batch'"):
        normalizer_value(w, "batch")


@pytest.mark.detectron2
def test_weighted_box_loss_by_hand():
    """Anchor [0, 0, 10, 10], ground truth [1, 1, 21, 11], zero predicted deltas, weights (1, 1, 1, 1):
    target deltas (0.6, 0.1, ln 2 = 0.693147, 0). L1 (β = 0): 1.393147. Smooth L1 β = 0.15:
    (0.6 - 0.075) + 0.5·0.01/0.15 + (0.693147 - 0.075) + 0 = 1.176480. Weight 2 doubles every loss.
    The predicted box is the anchor: intersection 9·9 = 81, union 100 + 200 - 81 = 219, enclosing box
    21·11 = 231, so GIoU loss = 1 - 81/219 + (231 - 219)/231 = 0.682085; DIoU loss = 1 - IoU + ρ²/c²
    with centres (5, 5), (11, 6): ρ² = 37, c² = 21² + 11² = 562: 0.695973; CIoU adds α·v with
    v = 4/π²·(atan 2 - atan 1)² = 0.041956, α = v/(1 - IoU + v): 0.698592."""
    from detectron2.modeling.box_regression import Box2BoxTransform

    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    args = (torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(1, 4), torch.tensor([[1.0, 1.0, 21.0, 11.0]]))
    w = torch.tensor([2.0])
    assert weighted_box_loss(*args, w, box2box_transform=t).item() == pytest.approx(2 * 1.393147, rel=1e-5)
    # Two anchors, each with its own weight: a second, exact anchor (loss 0) with weight 5 adds nothing.
    two = [torch.cat([x, x[:1] if i != 2 else torch.tensor([[0.0, 0.0, 10.0, 10.0]])]) for i, x in enumerate(args)]
    loss = weighted_box_loss(*two, torch.tensor([2.0, 5.0]), box2box_transform=t).item()
    assert loss == pytest.approx(2 * 1.393147, rel=1e-5)
    assert weighted_box_loss(*args, w, box2box_transform=t, smooth_l1_beta=0.15).item() == pytest.approx(
        2 * 1.176480, rel=1e-5)
    iou = 81 / 219
    giou = 1 - iou + 12 / 231
    diou = 1 - iou + 37 / 562
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(1)) ** 2
    ciou = diou + v * v / (1 - iou + v)
    assert (giou, diou, ciou) == pytest.approx((0.682085, 0.695973, 0.698592), abs=1e-6)
    for loss_type, expected in (("giou", giou), ("diou", diou), ("ciou", ciou)):
        loss = weighted_box_loss(*args, w, box2box_transform=t, loss_type=loss_type).item()
        assert loss == pytest.approx(2 * expected, rel=1e-5), loss_type
    with pytest.raises(ValueError, match="'iou'"):
        weighted_box_loss(*args, w, box2box_transform=t, loss_type="iou")
