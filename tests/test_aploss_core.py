"""Pure-torch tests of AP-loss and its error-driven update (Algorithm 1); they need no detectron2.

The reference :func:`algorithm_1` below is the paper's Algorithm 1 written out as plain Python loops over
every positive and every negative (no band, no sorting, no prefix sums), sharing no code with
aploss.ap_loss. test_aploss_model.py imports it too.
"""
import sys

import pytest
import torch

from aploss.ap_loss import (
    DEFAULT_DELTA,
    HYPERPARAMETERS,
    anchor_class_labels,
    ap_loss,
    error_driven_update,
    piecewise_step,
)


def algorithm_1(scores, labels, delta=1.0, interpolated=True):
    """Algorithm 1 with loops: returns (L_AP, [update per sample], number of negatives in the band).

    For each positive i in ascending score: L_ij = H(s_j - s_i) / rank(i) over ALL negatives j,
    prec_i = 1 - sum_j L_ij; with interpolation, if prec_i < the running maximum MaxPrec, the L_ij are
    scaled by (1 - MaxPrec) / (1 - prec_i); g_i = -sum_j L_ij, g_j += L_ij; finally g /= |P|.
    """
    s = [float(v) for v in scores.reshape(-1).tolist()]
    y = [int(v) for v in labels.reshape(-1).tolist()]
    pos = [k for k in range(len(s)) if y[k] == 1]
    neg = [k for k in range(len(s)) if y[k] == 0]
    g = [0.0] * len(s)
    if not pos:
        return 0.0, g, 0

    def h(x):
        return min(max(x / (2 * delta) + 0.5, 0.0), 1.0)

    max_prec, total = 0.0, 0.0
    for i in sorted(pos, key=lambda k: s[k]):
        rank_pos = 1.0 + sum(h(s[k] - s[i]) for k in pos if k != i)
        primary = {j: h(s[j] - s[i]) for j in neg}
        rank = rank_pos + sum(primary.values())
        primary = {j: v / rank for j, v in primary.items()}
        prec = 1.0 - sum(primary.values())
        if interpolated:
            if prec >= max_prec:
                max_prec = prec
            else:
                primary = {j: v * (1 - max_prec) / (1 - prec) for j, v in primary.items()}
            prec = max_prec
        g[i] = -sum(primary.values())
        for j, v in primary.items():
            g[j] += v
        total += 1.0 - prec
    band = sum(1 for j in neg if s[j] >= min(s[k] for k in pos) - delta)
    return total / len(pos), [v / len(pos) for v in g], band


# The hand-computed case: two positives a, b and three negatives n1, n2, n3 (one list, delta = 1).
SCORES = [3.0, 0.0, 5.0, 0.5, -2.0]  # a, b, n1, n2, n3
LABELS = [1, 1, 0, 0, 0]


def _run(delta=1.0, interpolated=True, scores=SCORES, labels=LABELS):
    s = torch.tensor(scores, requires_grad=True)
    out = ap_loss(s, torch.tensor(labels), delta=delta, interpolated=interpolated)
    out.loss.backward()
    return out, s.grad


def test_piecewise_step_function():
    """H(x) = clamp(x / (2 delta) + 1/2, 0, 1): 0 below -delta, 1 above delta, linear between."""
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    assert piecewise_step(x, 1.0).tolist() == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert piecewise_step(x, 0.5).tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    assert DEFAULT_DELTA == 1.0


def test_hand_computed_interpolated_ap_loss_and_update():
    """delta = 1, H(x) = clamp(x/2 + 1/2, 0, 1); x_ij = s_j - s_i.

    Band: min positive - delta = 0 - 1 = -1, so n3 (-2) is dropped: H(-2 - 0) = H(-2) = 0 and
    H(-2 - 3) = 0. Active negatives: n1, n2.
    Positive a (s = 3): rank+ = 1 + H(0 - 3) = 1 + 0 = 1; sum_j H(x_aj) = H(5-3) + H(0.5-3) + H(-5)
        = 1 + 0 + 0 = 1; rank = 2; L_a,n1 = 1/2, L_a,n2 = 0; prec_a = 1/2.
    Positive b (s = 0): rank+ = 1 + H(3 - 0) = 2; sum_j H(x_bj) = H(5) + H(0.5) + H(-2) = 1 + 0.75 + 0
        = 1.75; rank = 3.75; L_b,n1 = 1/3.75 = 4/15, L_b,n2 = 0.75/3.75 = 3/15; prec_b = 2/3.75 = 8/15.
    Interpolation, ascending score: b first, MaxPrec = 8/15; then a: prec_a = 1/2 < 8/15, so
        prec~_a = 8/15 and L~_a,n1 = 1/2 * (1 - 8/15) / (1 - 1/2) = 7/15.
    L_AP = 1 - (8/15 + 8/15) / 2 = 7/15.
    Update (divided by |P| = 2): g_a = -(7/15)/2 = -7/30; g_b = -(4/15 + 3/15)/2 = -7/30;
        g_n1 = (7/15 + 4/15)/2 = 11/30; g_n2 = (3/15)/2 = 1/10; g_n3 = 0.
    """
    out, grad = _run()
    assert out.loss.item() == pytest.approx(7 / 15, rel=1e-6)
    assert grad.tolist() == pytest.approx([-7 / 30, -7 / 30, 11 / 30, 1 / 10, 0.0], rel=1e-6, abs=1e-7)
    assert (out.num_pos, out.num_active_negatives, out.min_pos_score) == (2, 2, 0.0)
    assert grad[4].item() == 0.0  # outside the band: exactly nothing
    assert grad.sum().item() == pytest.approx(0.0, abs=1e-6)  # what the positives gain, negatives lose


def test_hand_computed_plain_ap():
    """Same case without interpolation: prec_a = 1/2, prec_b = 8/15, L_AP = 1 - (1/2 + 8/15)/2 = 29/60.
    g_a = -(1/2)/2 = -1/4; g_b = -7/30; g_n1 = (1/2 + 4/15)/2 = 23/60; g_n2 = 1/10; g_n3 = 0."""
    out, grad = _run(interpolated=False)
    assert out.loss.item() == pytest.approx(29 / 60, rel=1e-6)
    assert grad.tolist() == pytest.approx([-1 / 4, -7 / 30, 23 / 60, 1 / 10, 0.0], rel=1e-6, abs=1e-7)


def test_delta_changes_the_loss_the_update_and_the_band():
    """delta = 0.5, H(x) = clamp(x + 1/2, 0, 1): a: rank+ = 1, H(2) = 1 -> prec_a = 1/2; b: rank+ = 1 + H(3)
    = 2, H(5) + H(0.5) + H(-2) = 1 + 1 + 0 -> rank 4, prec_b = 1/2. No interpolation change (1/2 >= 1/2).
    L_AP = 1/2; g_a = g_b = -(1/2)/2 = -1/4; g_n1 = (1/2 + 1/4)/2 = 3/8; g_n2 = (1/4)/2 = 1/8.

    delta = 2, H(x) = clamp(x/4 + 1/2, 0, 1): a: prec_a = 1/(1 + H(2)) = 1/2; b: rank+ = 1 + H(3) = 2,
    H(5) + H(0.5) + H(-2) = 1 + 0.625 + 0 = 1.625, prec_b = 2/3.625 = 16/29; interpolated prec~_a = 16/29,
    L_AP = 13/29. The band edge is 0 - 2 = -2: n3 sits exactly on it (counted, H = 0, update 0).
    """
    out, grad = _run(delta=0.5)
    assert out.loss.item() == pytest.approx(0.5, rel=1e-6)
    assert grad.tolist() == pytest.approx([-0.25, -0.25, 0.375, 0.125, 0.0], rel=1e-6, abs=1e-7)
    wide, wide_grad = _run(delta=2.0)
    assert wide.loss.item() == pytest.approx(13 / 29, rel=1e-6)
    assert wide.num_active_negatives == 3 and wide_grad[4].item() == 0.0
    base, _ = _run(delta=1.0)
    assert len({round(x.loss.item(), 6) for x in (out, wide, base)}) == 3


def test_backward_is_the_error_driven_update_not_autograd_of_the_forward():
    """The error-driven update is not the gradient of L_AP, by design (§3.2).

    A differentiable re-implementation of the forward (plain AP, dense H by clamp) gives, through autograd,
    the true gradient. n1 (score 5) is above both positives by more than delta, so H(x_a,n1) = H(x_b,n1) = 1
    are saturated: dL/ds_n1 = 0, yet n1 is the worst-ranked negative and the update pushes it down by 23/60.
    Likewise dL/ds_a = 0 (a's H terms are all saturated) while g_a = -1/4. Both share the forward value.
    """
    s = torch.tensor(SCORES, requires_grad=True)
    pos, neg = s[[0, 1]], s[[2, 3, 4]]
    rank_pos = 1 + (piecewise_step(pos[None, :] - pos[:, None]).sum(1) - 0.5)  # k != i: minus H(0)
    rank = rank_pos + piecewise_step(neg[None, :] - pos[:, None]).sum(1)
    surrogate = 1 - (rank_pos / rank).mean()
    (true_grad,) = torch.autograd.grad(surrogate, s)
    out, update = _run(interpolated=False)
    assert surrogate.item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert true_grad[2].item() == 0.0 and true_grad[0].item() == 0.0
    assert update[2].item() == pytest.approx(23 / 60, rel=1e-6) and update[0].item() == pytest.approx(-0.25)
    assert not torch.allclose(true_grad, update, atol=1e-3)


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("interpolated", [True, False])
@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_matches_literal_algorithm_1_on_random_lists(interpolated, delta, chunk, monkeypatch):
    """Scores on a 0.25 grid (ties between positives, between negatives, across labels, and on the band
    edge, i.e. on the ends of the windows), ignored samples, 3 seeds; loss, update and band size equal the
    loop reference, whether the 120 samples are visited in one chunk or in chunks of 1 or 7 (a chunk
    boundary falls inside the band)."""
    if chunk is not None:
        monkeypatch.setattr(sys.modules["aploss.ap_loss"], "NEGATIVE_CHUNK", chunk)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randint(-12, 12, (3, 40), generator=g).float() * 0.25
        labels = torch.randint(0, 10, (3, 40), generator=g)
        labels = torch.where(labels == 0, 1, torch.where(labels == 1, -1, 0))
        result = error_driven_update(scores, labels, delta, interpolated)
        ref_loss, ref_update, ref_band = algorithm_1(scores, labels, delta, interpolated)
        assert result.loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
        assert result.update.reshape(-1).tolist() == pytest.approx(ref_update, rel=1e-5, abs=1e-7)
        assert result.num_active_negatives == ref_band
        assert result.update.shape == scores.shape


def test_large_list_precision():
    """20k negatives spread around 40 positives: the prefix sums (float64) match the per-positive loop
    of the authors' form (vectorised over negatives) to float32 precision."""
    g = torch.Generator().manual_seed(0)
    scores = torch.cat([torch.randn(40, generator=g) + 1.0, torch.randn(20000, generator=g) * 2 - 3])
    labels = torch.cat([torch.ones(40, dtype=torch.long), torch.zeros(20000, dtype=torch.long)])
    result = error_driven_update(scores, labels)
    pos, neg = scores[:40], scores[40:]
    order = pos.argsort()
    neg_update = torch.zeros(20000, dtype=torch.float64)
    pos_update = torch.zeros(40, dtype=torch.float64)
    max_prec, total = 0.0, 0.0
    for i in order.tolist():
        a = piecewise_step(pos - pos[i]).double().sum() + 0.5  # rank+, self term H(0) = 1/2 plus 1/2
        l_ij = piecewise_step(neg - pos[i]).double()
        rank = a + l_ij.sum()
        l_ij, prec = l_ij / rank, (a / rank).item()
        if prec >= max_prec:
            max_prec = prec
        else:
            l_ij = l_ij * (1 - max_prec) / (1 - prec)
        neg_update += l_ij
        pos_update[i] = -l_ij.sum()
        total += 1 - max_prec
    assert result.loss.item() == pytest.approx(total / 40, rel=1e-6)
    assert torch.allclose(result.update[40:].double(), neg_update / 40, rtol=1e-5, atol=1e-9)
    assert torch.allclose(result.update[:40].double(), pos_update / 40, rtol=1e-5, atol=1e-9)


def test_minibatch_ranks_the_images_together():
    """Two images, one list (Algorithm 1 takes all scores of the minibatch).

    Image 1: positive 0, negative -3; image 2: positive 5, negative 2. Alone, each image ranks its positive
    above its negative by more than delta: AP = 1, L_AP = 0. Together, image 2's negative (2) is above
    image 1's positive (0): for that positive rank+ = 1 + H(5 - 0) = 2, sum_j H = H(-3) + H(2) = 1, prec = 2/3;
    the positive 5 has prec 1. Ascending: 2/3 then 1 (no interpolation change). L_AP = 1 - (2/3 + 1)/2 = 1/6.
    Image 2's negative is pushed down by L = H(2)/3 = 1/3, divided by |P| = 2: 1/6.
    """
    scores = torch.tensor([[[0.0], [-3.0]], [[5.0], [2.0]]], requires_grad=True)  # (N=2, R=2, K=1)
    labels = torch.tensor([[[1], [0]], [[1], [0]]])
    out = ap_loss(scores, labels)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(1 / 6, rel=1e-6)
    per_image = [ap_loss(scores[i].detach(), labels[i]).loss.item() for i in range(2)]
    assert per_image == [0.0, 0.0]
    assert scores.grad[1, 1, 0].item() == pytest.approx(1 / 6, rel=1e-6)
    assert scores.grad[0, 0, 0].item() == pytest.approx(-1 / 6, rel=1e-6)
    assert scores.grad.shape == scores.shape


def test_no_positives_gives_zero_loss_and_zero_finite_update():
    """A batch without objects: no AP to compute. L_AP = 0, every update 0 (none of the negatives is pushed,
    as in the authors' code), and the backward still runs."""
    for labels in (torch.zeros(2, 6, 3, dtype=torch.long), torch.full((2, 6, 3), -1)):
        scores = torch.randn(2, 6, 3, requires_grad=True)
        out = ap_loss(scores, labels)
        out.loss.backward()
        assert out.loss.item() == 0.0 and torch.isfinite(out.loss)
        assert torch.equal(scores.grad, torch.zeros_like(scores))
        assert (out.num_pos, out.num_active_negatives, out.min_pos_score) == (0, 0, None)


def test_negatives_all_below_the_band_give_zero_loss():
    """Every negative more than delta below the lowest positive: AP = 1, L_AP = 0, no update, empty band."""
    out, grad = _run(scores=[3.0, 1.5, -0.5, -1.0, -4.0])
    assert out.loss.item() == 0.0 and out.num_active_negatives == 0
    assert torch.equal(grad, torch.zeros(5))


def test_grad_output_scales_the_update_and_dtype_follows_the_scores():
    s = torch.tensor(SCORES, dtype=torch.float64, requires_grad=True)
    (3.0 * ap_loss(s, torch.tensor(LABELS)).loss).backward()
    assert s.grad.dtype == torch.float64
    assert s.grad.tolist() == pytest.approx([-7 / 10, -7 / 10, 11 / 10, 3 / 10, 0.0], rel=1e-6, abs=1e-7)
    h = torch.tensor(SCORES, dtype=torch.bfloat16, requires_grad=True)
    ap_loss(h, torch.tensor(LABELS)).loss.backward()
    assert h.grad.dtype == torch.bfloat16 and torch.isfinite(h.grad).all()


def test_anchor_class_labels():
    """gt (N, R): class, background K, ignored -1 -> (N, R, K) one-vs-rest labels, ignored rows all -1."""
    gt = torch.tensor([[0, 3, -1, 2], [1, 1, 3, 3]])
    labels = anchor_class_labels(gt, 3)
    assert labels.dtype == torch.int8 and labels.shape == (2, 4, 3)
    assert labels[0].tolist() == [[1, 0, 0], [0, 0, 0], [-1, -1, -1], [0, 0, 1]]
    assert labels[1].tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="delta"):
        ap_loss(torch.zeros(3), torch.tensor([1, 0, 0]), delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        piecewise_step(torch.zeros(1), -1.0)
    with pytest.raises(AssertionError, match="must match"):
        error_driven_update(torch.zeros(3), torch.tensor([1, 0]))


def test_hyperparameters_are_declared():
    """The review's Table 1 counts 2 parameters for AP-loss: delta and interpolated AP, at the paper's values."""
    assert [(h.name, h.default) for h in HYPERPARAMETERS] == [("delta", 1.0), ("interpolated_ap", True)]
