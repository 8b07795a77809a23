"""The Sampling-Free arithmetic (sampling_free.core), checked against numbers computed by hand.

Pure torch: imports only sampling_free.core, so it runs without detectron2.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from sampling_free.core import (
    GUIDED_LOSS_MODES,
    HYPERPARAMETERS,
    OfficialGuidedLoss,
    class_adaptive_thresholds,
    guided_classification_loss,
    guided_ratio,
    initial_classification_loss,
    optimal_prior,
    prior_to_bias,
    thresholds_from_statistics,
)


def test_bias_of_prior_one_percent_is_minus_log_99():
    # b = -log((1 - 0.01) / 0.01) = -log(99) = -4.59512; sigmoid(b) = 1 / (1 + 99) = 0.01.
    b = prior_to_bias(0.01)
    assert b == pytest.approx(-math.log(99.0), abs=1e-12)
    assert b == pytest.approx(-4.595119850, abs=1e-9)
    assert torch.sigmoid(torch.tensor(b, dtype=torch.float64)).item() == pytest.approx(0.01, abs=1e-15)


def test_optimal_prior_is_the_foreground_fraction_of_anchor_class_elements():
    # Eq. 4: pi* = N_f / (N * C). N_f = 10 foreground anchors out of N = 1000, C = 4 classes:
    # pi* = 10 / 4000 = 0.0025, b = -log(N * C / N_f - 1) = -log(399) = -5.98896.
    pi = optimal_prior(10, 1000, 4)
    assert pi == 0.0025
    assert prior_to_bias(pi) == pytest.approx(-math.log(399.0), abs=1e-12)
    # COCO (paper §3.2: N / N_f ~ 1000, C = 80): pi* = 1 / 80000 = 1.25e-5, the code's PRIOR_PROB 1e-5.
    assert optimal_prior(1, 1000, 80) == pytest.approx(1.25e-5)


def _bce_per_foreground(bias, labels, num_classes):
    """BCE summed over every (anchor, class) element with all logits = bias, per foreground anchor.

    labels: (N,) in {0..C-1 foreground, C background}."""
    target = F.one_hot(labels, num_classes + 1)[:, :-1].double()
    logits = torch.full_like(target, float(bias))
    total = F.binary_cross_entropy_with_logits(logits, target, reduction="sum").item()
    return total / int((labels < num_classes).sum())


def test_initial_loss_equals_eq3_and_is_minimal_at_the_optimal_bias():
    # N = 200 anchors, C = 5 classes, N_f = 4 foreground (classes 0, 0, 3, 4): pi* = 4 / 1000 = 0.004.
    num_classes = 5
    labels = torch.full((200,), num_classes)
    labels[[3, 17, 50, 199]] = torch.tensor([0, 0, 3, 4])
    pi = optimal_prior(4, 200, num_classes)
    assert pi == 0.004
    b = prior_to_bias(pi)  # -log(249) = -5.51745
    assert b == pytest.approx(-math.log(249.0))
    # Eq. 3 at pi*: -log(0.004) - (1000 / 4 - 1) * log(0.996) = 5.52146 + 249 * 0.0040080 = 6.51946.
    eq3 = initial_classification_loss(pi, 4, 200, num_classes)
    assert eq3 == pytest.approx(-math.log(0.004) - 249 * math.log(0.996), abs=1e-12)
    assert eq3 == pytest.approx(6.51946, abs=1e-5)
    assert _bce_per_foreground(b, labels, num_classes) == pytest.approx(eq3, rel=1e-12)
    # Neighbouring biases give a larger initial loss (and so do RetinaNet's pi = 0.01 and 0.5).
    for other in (b - 0.1, b + 0.1, b - 1.0, b + 1.0, prior_to_bias(0.01), 0.0):
        assert _bce_per_foreground(other, labels, num_classes) > eq3 + 1e-6, other
    # The gradient wrt a shared bias is sum(sigmoid(b) - y) = N * C * pi* - N_f = 1000 * 0.004 - 4 = 0.
    bias = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    target = F.one_hot(labels, num_classes + 1)[:, :-1].double()
    F.binary_cross_entropy_with_logits(bias.expand_as(target), target, reduction="sum").backward()
    assert abs(bias.grad.item()) < 1e-9


def test_prior_and_fraction_validation():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="must be in"):
            prior_to_bias(bad)
    with pytest.raises(ValueError, match="num_foreground"):
        optimal_prior(0, 1000, 80)  # no foreground: pi* = 0, infinite bias
    with pytest.raises(ValueError, match="num_foreground"):
        optimal_prior(5, 4, 80)
    with pytest.raises(ValueError, match="num_classes"):
        optimal_prior(1, 10, 0)


def test_guided_ratio_value_gradient_and_no_gradient_through_r():
    # Two class logits at 0 with targets (1, 0): L_cls = log 2 + log 2 = 1.386294.
    # L_reg = |d| with d = 0.5: 0.5. r = 0.5 / 1.386294 = 0.360674.
    logits = torch.zeros(2, requires_grad=True)
    delta = torch.tensor(0.5, requires_grad=True)
    loss_cls = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0]), reduction="sum")
    loss_reg = delta.abs()
    scaled, r = guided_classification_loss(loss_cls, loss_reg)
    assert loss_cls.item() == pytest.approx(2 * math.log(2))
    assert r.item() == pytest.approx(0.5 / (2 * math.log(2)))
    assert r.item() == pytest.approx(0.360674, abs=1e-6)
    assert not r.requires_grad
    assert scaled.item() == pytest.approx(loss_reg.item())  # r * L_cls has the value of L_reg
    scaled.backward()
    # d(r * L_cls)/d logits = r * (sigmoid(0) - y) = 0.360674 * (-0.5, 0.5) = (-0.180337, 0.180337).
    assert torch.allclose(logits.grad, torch.tensor([-0.180337, 0.180337]), atol=1e-6)
    assert torch.allclose(logits.grad, r * (torch.sigmoid(torch.zeros(2)) - torch.tensor([1.0, 0.0])))
    # Nothing reaches the regression input through r (were r not detached, r * L_cls = L_reg would send
    # the whole gradient there and none to the logits).
    assert delta.grad is None


def test_guided_ratio_with_reg_weight():
    # Eq. 5 with w_reg = 2: r = 2 * 3 / 4 = 1.5.
    assert guided_ratio(torch.tensor(4.0), torch.tensor(3.0), reg_weight=2.0).item() == 1.5


def test_guided_ratio_is_zero_when_either_loss_vanishes():
    # No foreground in the batch: L_reg = 0, so r = 0 and r * L_cls = 0 (finite, zero gradient).
    logits = torch.zeros(3, requires_grad=True)
    loss_cls = F.binary_cross_entropy_with_logits(logits, torch.zeros(3), reduction="sum")
    scaled, r = guided_classification_loss(loss_cls, torch.zeros(()))
    assert r.item() == 0.0 and scaled.item() == 0.0
    scaled.backward()
    assert torch.equal(logits.grad, torch.zeros(3))
    # L_cls = 0 (nothing to scale): r = 0, not inf or NaN; a non-finite loss also gives 0.
    assert guided_ratio(torch.tensor(0.0), torch.tensor(1.0)).item() == 0.0
    assert guided_ratio(torch.tensor(float("inf")), torch.tensor(1.0)).item() == 0.0
    assert guided_ratio(torch.tensor(1.0), torch.tensor(float("nan"))).item() == 0.0


def test_class_adaptive_thresholds_on_a_crafted_case():
    # N = 1000 anchors, N_j = (6, 3, 1): N_f / N = 0.01, frequencies (0.6, 0.3, 0.1),
    # theta = 0.01 * (0.6, 0.3, 0.1) = (0.006, 0.003, 0.001) = N_j / N.
    theta = class_adaptive_thresholds(torch.tensor([6, 3, 1]), 1000)
    assert theta.dtype == torch.float64
    assert torch.allclose(theta, torch.tensor([0.006, 0.003, 0.001], dtype=torch.float64), atol=1e-15)
    assert theta.sum().item() == pytest.approx(0.01)  # sum_j theta_j = N_f / N
    # Equal frequencies: theta_j = (N_f / N) / C = pi*, the optimal prior of Eq. 4 (N_f = 10, C = 2).
    theta = class_adaptive_thresholds(torch.tensor([5, 5]), 1000)
    assert torch.allclose(theta, torch.full((2,), optimal_prior(10, 1000, 2), dtype=torch.float64))
    # A class never counted gets threshold 0.
    assert class_adaptive_thresholds(torch.tensor([4, 0]), 100).tolist() == [0.04, 0.0]


def test_class_adaptive_thresholds_validation():
    with pytest.raises(ValueError, match="foreground counts"):
        class_adaptive_thresholds(torch.zeros(3), 100)
    with pytest.raises(ValueError, match="smaller than the foreground"):
        class_adaptive_thresholds(torch.tensor([5, 5]), 9)



def test_thresholds_from_statistics_counts_then_prior_then_none():
    # Counts (N_1, N_2, N_3, background) = (6, 3, 1, 990): theta_j = N_j / N with N = 1000; a prior is ignored.
    counts = torch.tensor([6, 3, 1, 990])
    for prior in (0.0, 0.5):
        theta = thresholds_from_statistics(counts, torch.tensor(prior))
        assert theta.dtype == torch.float32
        assert theta.tolist() == pytest.approx([0.006, 0.003, 0.001], abs=1e-9)
    # One foreground sample is enough statistics.
    theta = thresholds_from_statistics(torch.tensor([1, 0, 0, 99]), torch.tensor(0.3))
    assert theta.tolist() == pytest.approx([0.01, 0.0, 0.0], abs=1e-9)
    # No foreground counted (or nothing at all): theta_j = pi for each of the C = 3 classes.
    for background in (500, 0):
        theta = thresholds_from_statistics(torch.tensor([0, 0, 0, background]), torch.tensor(0.02))
        assert theta.dtype == torch.float32 and theta.shape == (3,)
        assert theta.tolist() == pytest.approx([0.02] * 3, abs=1e-9)
    # Neither statistics nor a prior: the caller's fixed threshold applies.
    assert thresholds_from_statistics(torch.tensor([0, 0, 0, 500]), torch.tensor(0.0)) is None
    assert thresholds_from_statistics(torch.zeros(4, dtype=torch.long), torch.zeros(())) is None

def test_official_guided_loss_freezes_r_after_warmup_and_weights_by_sigma():
    loss = OfficialGuidedLoss(warmup_iters=2)
    assert loss.iters.item() == 0 and torch.equal(loss.sigmas.detach(), torch.ones(2))
    # Step 1: r = 1 / 4 = 0.25; with sigma = 1 each loss is divided by 2: cls 0.25 * 4 / 2 = 0.5,
    # reg 1 / 2 = 0.5, log(sigma_cls * sigma_reg) = 0.
    out = loss(torch.tensor(4.0), torch.tensor(1.0))
    assert loss.ratio.item() == 0.25
    assert (out["loss_cls"].item(), out["loss_box_reg"].item(), out["loss_sigma"].item()) == (0.5, 0.5, 0.0)
    # Step 2 (the last warm-up step): r = 3 / 2 = 1.5, then frozen.
    loss(torch.tensor(2.0), torch.tensor(3.0))
    assert loss.ratio.item() == 1.5 and loss.iters.item() == 2
    # Step 3: r stays 1.5 although L_reg / L_cls = 1 / 10 now: cls = 1.5 * 10 / 2 = 7.5.
    out = loss(torch.tensor(10.0), torch.tensor(1.0))
    assert loss.ratio.item() == 1.5 and out["loss_cls"].item() == 7.5
    # sigma is learned: d/dsigma_cls [r L / (2 sigma^2) + log sigma_cls sigma_reg] = -r L / sigma^3 + 1/sigma
    # = -15 + 1 = -14 at sigma = 1; for sigma_reg: -1 + 1 = 0.
    sum(out.values()).backward()
    assert torch.allclose(loss.sigmas.grad, torch.tensor([-14.0, 0.0]))
    with pytest.raises(ValueError, match="warmup_iters"):
        OfficialGuidedLoss(warmup_iters=0)


def test_no_hyperparameters_and_modes():
    assert HYPERPARAMETERS == ()
    assert GUIDED_LOSS_MODES == ("paper", "official", "off")
