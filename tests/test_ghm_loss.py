"""Pure-torch tests of GHM-C, ASL1 and GHM-R (ghm.ghm_loss); they need no detectron2.

Every expected number is computed by hand in the docstring or comment next to it.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from ghm.ghm_loss import (
    HYPERPARAMETERS,
    GradientDensity,
    asl1,
    asl1_gradient_norm,
    bin_indices,
    density_summary,
    ghm_c_loss,
    ghm_r_loss,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# Six elements with known gradient norms g = |p - p*| (Eq. 3), M = 3 regions [0,1/3), [1/3,2/3), [2/3,1]:
#   p       0.05  0.1   0.2   0.5   0.1   0.95
#   p*      0     0     0     1     1     0
#   g       0.05  0.1   0.2   0.5   0.9   0.95
#   region  1     1     1     2     3     3          -> R = (3, 1, 2), N = 6
P = [0.05, 0.1, 0.2, 0.5, 0.1, 0.95]
T = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
G = [0.05, 0.1, 0.2, 0.5, 0.9, 0.95]
# BCE of each element: -log(1 - p) for p* = 0, -log(p) for p* = 1.
BCE = [-math.log(0.95), -math.log(0.9), -math.log(0.8), -math.log(0.5), -math.log(0.1), -math.log(0.05)]


def crafted():
    return torch.tensor([logit(p) for p in P]), torch.tensor(T)


def test_bin_indices_follow_the_authors_edges():
    """Region j = [j/M, (j+1)/M): 1/3 and 2/3 open the next region, 1.0 stays in the last (edge 1 + 1e-6)."""
    g = torch.tensor([0.0, 0.3, 1.0 / 3.0, 0.66, 2.0 / 3.0, 0.999, 1.0])
    assert bin_indices(g, 3).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert bin_indices(torch.tensor([0.0999, 0.1, 0.95, 1.0]), 10).tolist() == [0, 1, 9, 9]
    assert bin_indices(torch.tensor([0.2, 1.0]), 1).tolist() == [0, 0]


def test_ghm_c_weights_and_loss_without_momentum():
    """beta_i = N / (R_ind(g_i) * M): 6 / (3 * 3) = 2/3 for region 1, 6 / (1 * 3) = 2 for region 2,
    6 / (2 * 3) = 1 for region 3. L = 1/N sum beta_i BCE_i."""
    x, t = crafted()
    density = GradientDensity(3, 0.0)
    loss, out = ghm_c_loss(x, t, density)
    beta = [2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0]
    assert out.weights.tolist() == pytest.approx(beta, rel=1e-6)
    assert out.counts.tolist() == [3.0, 1.0, 2.0]
    assert out.bin_index.tolist() == [0, 0, 0, 1, 2, 2]
    assert out.num_valid.item() == 6.0
    expected = sum(b * c for b, c in zip(beta, BCE)) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert density.acc_sum.tolist() == [0.0, 0.0, 0.0]  # momentum 0: no EMA kept


def test_ghm_c_gradient_is_beta_times_p_minus_target_over_n():
    """dL/dx_i = beta_i (p_i - p*_i) / N: the harmonised gradient (Eq. 8)."""
    x, t = crafted()
    x.requires_grad_(True)
    loss, out = ghm_c_loss(x, t, GradientDensity(3, 0.0))
    loss.backward()
    beta = [2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0]
    expected = [b * (p - y) / 6 for b, p, y in zip(beta, P, T)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_ema_two_calls_paper_and_official():
    """alpha = 0.75, S starts at 0.

    Call 1 (the crafted R = (3, 1, 2)): S = 0.25 R = (0.75, 0.25, 0.5); beta = 6 / (S * 3) = 8/3, 8, 4 in
    both modes (all regions non-empty: n = M = 3).
    Call 2, six elements with g = 0.1 x4, 0.5 x2 (p* = 0): R = (4, 2, 0).
      paper:    S = 0.75 S + 0.25 R = (0.5625 + 1, 0.1875 + 0.5, 0.375 + 0) = (1.5625, 0.6875, 0.375);
                beta = 6 / (S * 3): region 1 6/4.6875 = 1.28, region 2 6/2.0625 = 2.909090...
      official: region 3 is empty and keeps S = 0.5: S = (1.5625, 0.6875, 0.5); n = 2 non-empty regions:
                beta = 6 / (S * 2): region 1 6/3.125 = 1.92, region 2 6/1.375 = 4.363636...
    """
    x, t = crafted()
    second_x = torch.tensor([logit(0.1)] * 4 + [logit(0.5)] * 2)
    second_t = torch.zeros(6)
    results = {}
    for mode in ("paper", "official"):
        density = GradientDensity(3, 0.75, mode=mode)
        _, first = ghm_c_loss(x, t, density)
        assert first.weights.tolist() == pytest.approx([8 / 3] * 3 + [8.0, 4.0, 4.0], rel=1e-6)
        assert density.acc_sum.tolist() == pytest.approx([0.75, 0.25, 0.5])
        loss, second = ghm_c_loss(second_x, second_t, density)
        results[mode] = (density.acc_sum.tolist(), second.weights.tolist(), loss.item())
    acc, weights, loss = results["paper"]
    assert acc == pytest.approx([1.5625, 0.6875, 0.375])
    assert weights == pytest.approx([1.28] * 4 + [6 / 2.0625] * 2, rel=1e-6)
    assert loss == pytest.approx((4 * 1.28 * -math.log(0.9) + 2 * 6 / 2.0625 * -math.log(0.5)) / 6, rel=1e-6)
    acc, weights, loss = results["official"]
    assert acc == pytest.approx([1.5625, 0.6875, 0.5])
    assert weights == pytest.approx([1.92] * 4 + [6 / 1.375] * 2, rel=1e-6)


def test_first_call_with_momentum_is_the_plain_weight_over_one_minus_alpha():
    """S starts at 0, so call 1 divides by (1 - alpha) R: every beta is 1 / (1 - alpha) = 4 times the
    momentum-0 beta, and so is the loss (alpha = 0.75)."""
    x, t = crafted()
    plain, _ = ghm_c_loss(x, t, GradientDensity(30, 0.0))
    smoothed, _ = ghm_c_loss(x, t, GradientDensity(30, 0.75))
    assert smoothed.item() == pytest.approx(4 * plain.item(), rel=1e-6)


def test_empty_region_gets_no_weight_and_no_nan():
    """All six g in region 1 of 3 (p = 0.1, p* = 0): regions 2 and 3 are empty. beta = 6 / (6 * 3) = 1/3
    (paper) or 6 / (6 * 1) = 1 (official, n = 1); the empty regions' bin weights are 0, nothing is NaN,
    and with momentum the empty regions' EMA decays (paper) or stays (official)."""
    x = torch.full((6,), logit(0.1))
    t = torch.zeros(6)
    for mode, beta in (("paper", 1 / 3), ("official", 1.0)):
        density = GradientDensity(3, 0.0, mode=mode)
        loss, out = ghm_c_loss(x, t, density)
        assert out.bin_weights.tolist() == pytest.approx([beta, 0.0, 0.0])
        assert out.weights.tolist() == pytest.approx([beta] * 6)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(beta * -math.log(0.9), rel=1e-6)
    density = GradientDensity(3, 0.5, mode="paper")
    density.acc_sum.copy_(torch.tensor([2.0, 4.0, 8.0]))
    out = density(torch.full((6,), 0.1))
    assert density.acc_sum.tolist() == [4.0, 2.0, 4.0]  # 0.5 * (2, 4, 8) + 0.5 * (6, 0, 0)
    assert torch.isfinite(out.bin_weights).all() and out.bin_weights[1:].tolist() == [0.0, 0.0]
    official = GradientDensity(3, 0.5, mode="official")
    official.acc_sum.copy_(torch.tensor([2.0, 4.0, 8.0]))
    official(torch.full((6,), 0.1))
    assert official.acc_sum.tolist() == [4.0, 4.0, 8.0]


def test_ignored_elements_are_excluded():
    """Ignore elements 4 and 6 (g 0.5 and 0.95): the density sees g = 0.05, 0.1, 0.2, 0.9, N = 4,
    R = (3, 0, 1), beta = 4 / (3 * 3) = 4/9 and 4 / (1 * 3) = 4/3; ignored elements get weight 0 and no
    gradient, and the loss equals GHM-C on the four valid elements alone."""
    x, t = crafted()
    x.requires_grad_(True)
    valid = torch.tensor([True, True, True, False, True, False])
    loss, out = ghm_c_loss(x, t, GradientDensity(3, 0.0), valid=valid)
    assert out.counts.tolist() == [3.0, 0.0, 1.0] and out.num_valid.item() == 4.0
    assert out.weights.tolist() == pytest.approx([4 / 9] * 3 + [0.0, 4 / 3, 0.0], rel=1e-6)
    expected = (4 / 9 * (BCE[0] + BCE[1] + BCE[2]) + 4 / 3 * BCE[4]) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert x.grad[3].item() == 0.0 and x.grad[5].item() == 0.0
    alone, _ = ghm_c_loss(x.detach()[valid], t[valid], GradientDensity(3, 0.0))
    assert loss.item() == pytest.approx(alone.item(), rel=1e-6)
    # A mask broadcast over the class dimension: (A, 1) for (A, K) logits.
    xk = x.detach().view(3, 2)
    _, out2 = ghm_c_loss(xk, t.view(3, 2), GradientDensity(3, 0.0), valid=torch.tensor([[True], [False], [True]]))
    assert out2.num_valid.item() == 4.0 and out2.weights[1].tolist() == [0.0, 0.0]


def test_one_region_is_the_mean_cross_entropy():
    """M = 1 (eps = 1): GD = N for every element, beta = 1, GHM-C = mean BCE."""
    x, t = crafted()
    loss, _ = ghm_c_loss(x, t, GradientDensity(1, 0.0))
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(x, t).item(), rel=1e-6)


def test_no_valid_element_gives_zero_loss_connected_to_the_graph():
    x = torch.zeros(0, 4, requires_grad=True)
    loss, out = ghm_c_loss(x, torch.zeros(0, 4), GradientDensity(30, 0.75))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert density_summary([out]) == {}


# ASL1 with mu = 0.02 at legs of Pythagorean triples (mu, d, root), sqrt(d^2 + mu^2) exact:
#   d        0      1/120    0.021   -0.048   0.099
#   root     0.02   13/600   0.029   0.052    0.101     (12-5-13, 20-21-29, 20-48-52, 20-99-101)
#   ASL1     0      1/600    0.009   0.032    0.081
#   g_r      0      5/13     21/29   48/52    99/101
D = [0.0, 1 / 120, 0.021, -0.048, 0.099]
ASL1 = [0.0, 1 / 600, 0.009, 0.032, 0.081]
GR = [0.0, 5 / 13, 21 / 29, 48 / 52, 99 / 101]


def test_asl1_and_its_gradient_norm_by_hand():
    d = torch.tensor(D, dtype=torch.float64, requires_grad=True)
    assert asl1(d, 0.02).tolist() == pytest.approx(ASL1, abs=1e-12)
    assert asl1_gradient_norm(d.detach(), 0.02).tolist() == pytest.approx(GR, rel=1e-12)
    assert asl1(d).tolist() == pytest.approx(ASL1, abs=1e-12)  # mu defaults to the paper's 0.02
    assert asl1_gradient_norm(d.detach()).tolist() == pytest.approx(GR, rel=1e-12)
    asl1(d, 0.02).sum().backward()
    # dASL1/dd = d / sqrt(d^2 + mu^2): its norm is g_r, its sign d's.
    assert d.grad.abs().tolist() == pytest.approx(GR, rel=1e-12) and d.grad[3] < 0
    # Far from 0 ASL1 ~ |d| - mu + mu^2 / (2 |d|) (L1: 10 - 0.02 + 0.00002); near 0 ~ d^2 / (2 mu).
    assert asl1(torch.tensor(10.0, dtype=torch.float64), 0.02).item() == pytest.approx(9.98002, abs=1e-9)
    assert asl1(torch.tensor(1e-3, dtype=torch.float64), 0.02).item() == pytest.approx(1e-6 / 0.04, rel=1e-3)


def test_ghm_r_weights_and_loss_by_hand():
    """d = (0, 1/120, 0.021, -0.048, 0.099, 0.099) over M = 10 regions of g_r:
    g_r = 0, 0.385, 0.724, 0.923, 0.980, 0.980 -> regions 1, 4, 8, 10, 10, 10: R_1 = R_4 = R_8 = 1, R_10 = 3.
    N = 6: beta = 6 / (1 * 10) = 0.6 for the first three, 6 / (3 * 10) = 0.2 for the last three.
    L = (0.6 (0 + 1/600 + 0.009) + 0.2 (0.032 + 0.081 + 0.081)) / 6 = (0.0064 + 0.0388) / 6.
    With alpha = 0.7 on a fresh density the first call divides by 0.3 R: every beta / 0.3."""
    target = torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.0, 1.0]], dtype=torch.float64)
    pred = target + torch.tensor([[0.0, 1 / 120, 0.021], [-0.048, 0.099, 0.099]], dtype=torch.float64)
    loss, out = ghm_r_loss(pred, target, GradientDensity(10, 0.0), mu=0.02)
    assert out.bin_index.flatten().tolist() == [0, 3, 7, 9, 9, 9]
    assert out.weights.flatten().tolist() == pytest.approx([0.6] * 3 + [0.2] * 3, rel=1e-6)
    assert loss.item() == pytest.approx((0.0064 + 0.0388) / 6, rel=1e-6)
    smoothed, out = ghm_r_loss(pred, target, GradientDensity(10, 0.7), mu=0.02)
    assert out.weights.flatten().tolist() == pytest.approx([2.0] * 3 + [2 / 3] * 3, rel=1e-6)
    assert smoothed.item() == pytest.approx(loss.item() / 0.3, rel=1e-6)
    default_mu, _ = ghm_r_loss(pred, target, GradientDensity(10, 0.0))  # mu defaults to 0.02
    assert default_mu.item() == pytest.approx(loss.item(), rel=1e-12)
    with pytest.raises(ValueError, match="mu=0"):
        ghm_r_loss(pred, target, GradientDensity(10, 0.0), mu=0.0)


def test_ghm_r_without_positives_is_zero():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss, out = ghm_r_loss(pred, torch.zeros(0, 4), GradientDensity(10, 0.7))
    assert loss.item() == 0.0 and loss.requires_grad
    assert out.counts.sum().item() == 0.0


def test_all_reduce_averages_the_counts(monkeypatch):
    """Two workers; the other one has R = (1, 1, 0): the averaged counts ((3, 1, 2) + (1, 1, 0)) / 2 =
    (2, 1, 1) define the density, N stays this worker's 6: beta = 6 / (2 * 3) = 1, 6 / (1 * 3) = 2, 2.
    Without the switch (or with one worker) the own counts are used."""
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t: t.add_(torch.tensor([1.0, 1.0, 0.0])))
    g = torch.tensor(G)
    out = GradientDensity(3, 0.0, all_reduce=True)(g)
    assert out.counts.tolist() == [2.0, 1.0, 1.0]
    assert out.weights.tolist() == pytest.approx([1.0] * 3 + [2.0] * 3, rel=1e-6)
    assert GradientDensity(3, 0.0)(g).counts.tolist() == [3.0, 1.0, 2.0]
    monkeypatch.setattr(dist, "get_world_size", lambda: 1)
    assert GradientDensity(3, 0.0, all_reduce=True)(g).counts.tolist() == [3.0, 1.0, 2.0]


def test_ema_is_a_buffer_saved_loaded_and_moved():
    density = GradientDensity(3, 0.75)
    density(torch.tensor(G))
    state = density.state_dict()
    assert list(state) == ["acc_sum"] and state["acc_sum"].tolist() == [0.75, 0.25, 0.5]
    restored = GradientDensity(3, 0.75)
    restored.load_state_dict(state)
    a, b = density(torch.tensor(G)), restored(torch.tensor(G))
    assert torch.equal(a.weights, b.weights) and torch.equal(density.acc_sum, restored.acc_sum)
    assert restored.to(torch.float64).acc_sum.dtype == torch.float64


def test_density_summary_by_hand():
    """Crafted R = (3, 1, 2), beta = (2/3, 2, 1): first region 3/6 = 0.5 of the elements, weight 2/3; last
    region 2/6, weight 1; 3 non-empty regions. Two outputs (e.g. two FPN levels) add their counts: a
    second call with R = (1, 0, 0), beta_1 = 1 / (1 * 3) = 1/3 gives region 1: 4 elements, mean weight
    (3 * 2/3 + 1/3) / 4 = 7/12. An empty first region leaves its weight out."""
    density = GradientDensity(3, 0.0)
    first = density(torch.tensor(G))
    stats = density_summary([first])
    assert stats == pytest.approx({"frac_lowest_bin": 0.5, "frac_highest_bin": 1 / 3, "nonempty_bins": 3.0,
                                   "weight_lowest_bin": 2 / 3, "weight_highest_bin": 1.0})
    second = density(torch.tensor([0.05]))
    both = density_summary([first, second])
    assert both["frac_lowest_bin"] == pytest.approx(4 / 7) and both["weight_lowest_bin"] == pytest.approx(7 / 12)
    # One element in the last region only: 1 non-empty region, its beta 1 / (1 * 3); region 1 has no weight.
    only_last = density_summary([density(torch.tensor([0.9]))])
    assert only_last == pytest.approx({"frac_lowest_bin": 0.0, "frac_highest_bin": 1.0, "nonempty_bins": 1.0,
                                       "weight_highest_bin": 1 / 3})
    only_first = density_summary([density(torch.tensor([0.05]))])
    assert only_first == pytest.approx({"frac_lowest_bin": 1.0, "frac_highest_bin": 0.0, "nonempty_bins": 1.0,
                                        "weight_lowest_bin": 1 / 3})


def test_invalid_arguments_raise():
    for kwargs, match in (({"bins": 0, "momentum": 0.5}, "bins=0"), ({"bins": 3, "momentum": 1.0}, "momentum=1.0"),
                          ({"bins": 3, "momentum": -0.1}, "momentum=-0.1"),
                          ({"bins": 3, "momentum": 0.5, "mode": "mmdet"}, "mode='mmdet'")):
        with pytest.raises(ValueError, match=match):
            GradientDensity(**kwargs)


def test_hyperparameters_declare_the_default_config_values():
    assert {h.name: h.default for h in HYPERPARAMETERS} == {
        "ghm_c_bins": 30, "ghm_c_momentum": 0.75, "ghm_r_mu": 0.02, "ghm_r_bins": 10, "ghm_r_momentum": 0.7,
        "ghm_r_loss_weight": 10.0,
    }
