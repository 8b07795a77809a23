"""Pure-torch tests of the residual-objectness cascade (Algorithm 1); they need no detectron2."""
import math

import pytest
import torch

from resobj.cascade import (
    cascade_statistics,
    final_objectness,
    fuse_scores,
    residual_objectness_cascade,
    summed_objectness_loss,
)


def sp(x: float) -> float:
    """softplus(x) = log(1 + e^x). BCE-with-logits of logit x is sp(-x) for label 1, sp(x) for label 0."""
    return math.log1p(math.exp(x))


# One image, five anchors: two positives (0, 2), two negatives (1, 3), one ignored (4).
O0 = [[2.0, 0.5, 0.0, -3.0, 1.0]]
R1 = [[1.0, -2.0, 0.5, 5.0, 7.0]]
R2 = [[-1.0, 10.0, 0.5, 0.0, 0.0]]
LABELS = [[1, 0, 1, 0, -1]]


def _run(detach=True, gate="image", requires_grad=False):
    o0 = torch.tensor(O0, requires_grad=requires_grad)
    r1 = torch.tensor(R1, requires_grad=requires_grad)
    r2 = torch.tensor(R2, requires_grad=requires_grad)
    out = residual_objectness_cascade(o0, [r1, r2], torch.tensor(LABELS), gate=gate, detach=detach)
    return out, (o0, r1, r2)


def test_cascade_hand_computed():
    """Worked example of Algorithm 1 with T = 2.

    Step 0: L_obj over the valid anchors {0, 1, 2, 3} (anchor 4 is ignored):
        sp(-2) + sp(0.5) + sp(-0) + sp(-3)      (positives 0 and 2 use sp(-o), negatives sp(o)).
    Step 1: min positive o_0 = min(2, 0) = 0. Gate G_1 = valid anchors with o_0 >= 0 = {0, 1, 2}:
        anchor 1 (negative, 0.5) is a hard negative; anchor 3 (-3) is rejected; anchor 4 is ignored
        although its 1.0 is above the threshold. o_1 = o_0 + r_1 on G_1 = [3, -1.5, 0.5], anchors 3 and 4
        keep o_0 = [-3, 1]. L_1 = sp(-3) + sp(-1.5) + sp(-0.5).
    Step 2: min positive o_1 = min(3, 0.5) = 0.5. G_2 = {0, 2} (anchor 1 fell to -1.5, anchor 3 stays
        -3). o_2 = [3 - 1, -1.5, 0.5 + 0.5, -3, 1] = [2, -1.5, 1, -3, 1]. L_2 = sp(-2) + sp(-1).
    """
    out, _ = _run()
    assert out.loss_obj.item() == pytest.approx(sp(-2) + sp(0.5) + sp(0) + sp(-3), rel=1e-6)
    assert out.gates[0].tolist() == [[True, True, True, False, False]]
    assert out.gates[1].tolist() == [[True, False, True, False, False]]
    assert out.min_pos[0].tolist() == [0.0]
    assert out.min_pos[1].tolist() == [0.5]
    assert out.logits[1].tolist() == [[3.0, -1.5, 0.5, -3.0, 1.0]]
    assert out.logits[2].tolist() == [[2.0, -1.5, 1.0, -3.0, 1.0]]
    assert out.loss_res[0].item() == pytest.approx(sp(-3) + sp(-1.5) + sp(-0.5), rel=1e-6)
    assert out.loss_res[1].item() == pytest.approx(sp(-2) + sp(-1), rel=1e-6)


def test_cascade_zero_steps_is_objectness_only():
    """T = 0 (RetinaNet-Obj): only L_obj, nothing gated."""
    out = residual_objectness_cascade(torch.tensor(O0), [], torch.tensor(LABELS))
    assert out.loss_obj.item() == pytest.approx(sp(-2) + sp(0.5) + sp(0) + sp(-3), rel=1e-6)
    assert out.loss_res == [] and out.gates == [] and len(out.logits) == 1


def test_detach_blocks_gradient_into_objectness_and_switch_restores_it():
    """d(L_1 + L_2)/d(o_0) is 0 with detach (Table 2a, "Not to Objectness").

    Without detach, dL_1/do_0 = sigmoid(o_1) - y on G_1 = {0, 1, 2}:
        anchor 0: sigmoid(3) - 1; anchor 1: sigmoid(-1.5); anchor 2: sigmoid(0.5) - 1; dL_2/do_0 adds
        sigmoid(o_2) - y on G_2 = {0, 2} (o_2 depends on o_0 through o_1): sigmoid(2) - 1, sigmoid(1) - 1.
    The gradient into r_1 is dL_1/dr_1 (+ dL_2/dr_1 without detach).
    """
    s = torch.sigmoid
    out, (o0, r1, r2) = _run(detach=True, requires_grad=True)
    (out.loss_res[0] + out.loss_res[1]).backward()
    assert o0.grad.abs().sum().item() == 0.0
    expected_r1 = [s(torch.tensor(3.0)) - 1, s(torch.tensor(-1.5)), s(torch.tensor(0.5)) - 1, 0.0, 0.0]
    assert r1.grad[0].tolist() == pytest.approx([float(x) for x in expected_r1], abs=1e-6)
    assert r2.grad[0].tolist() == pytest.approx(
        [float(s(torch.tensor(2.0)) - 1), 0.0, float(s(torch.tensor(1.0)) - 1), 0.0, 0.0], abs=1e-6
    )

    out, (o0, r1, r2) = _run(detach=False, requires_grad=True)
    (out.loss_res[0] + out.loss_res[1]).backward()
    g2 = [float(s(torch.tensor(2.0)) - 1), 0.0, float(s(torch.tensor(1.0)) - 1), 0.0, 0.0]
    expected_o0 = [float(x) + y for x, y in zip(expected_r1, g2)]
    assert o0.grad[0].tolist() == pytest.approx(expected_o0, abs=1e-6)
    assert r1.grad[0].tolist() == pytest.approx(expected_o0, abs=1e-6)  # r_1 also receives dL_2


def test_defaults_are_the_paper_settings():
    """Called without options the cascade gates per image and detaches o_{t-1} (Table 2a's winner)."""
    o0 = torch.tensor([O0[0], [-4.0, -3.5, -5.0, 3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([LABELS[0], [1, 0, 0, 0, 0]])
    r = [torch.zeros_like(o0, requires_grad=True)]
    out = residual_objectness_cascade(o0, r, labels)
    assert out.min_pos[0].tolist() == [0.0, -4.0]  # per image (gate="batch" gives [-4, -4])
    out.loss_res[0].backward()
    assert o0.grad is None or o0.grad.abs().sum() == 0
    assert r[0].grad.abs().sum() > 0


def test_gate_per_batch_uses_one_threshold():
    """Image 1 has a positive at -4, so the batch threshold drops to -4 and image 0's negative at -3
    (rejected with the per-image threshold 0) joins G_1 in batch mode."""
    o0 = torch.tensor([O0[0], [-4.0, -3.5, -5.0, 3.0, 0.0]])
    labels = torch.tensor([LABELS[0], [1, 0, 0, 0, 0]])
    r = [torch.zeros_like(o0)]
    per_image = residual_objectness_cascade(o0, r, labels, gate="image")
    per_batch = residual_objectness_cascade(o0, r, labels, gate="batch")
    assert per_image.min_pos[0].tolist() == [0.0, -4.0]
    assert per_batch.min_pos[0].tolist() == [-4.0, -4.0]
    assert per_image.gates[0].tolist() == [[True, True, True, False, False], [True, True, False, True, True]]
    assert per_batch.gates[0].tolist() == [[True, True, True, True, False], [True, True, False, True, True]]


def test_no_positive_image_is_not_gated_and_stays_finite():
    """Image 1 has no positives: min over an empty set = +inf, G_t is empty for it, L_t gets nothing
    from it, L_obj still counts its negatives; gradients are finite and reach every input."""
    o0 = torch.tensor([O0[0], [0.3, -0.2, 4.0, 1.0, 0.0]], requires_grad=True)
    r1 = torch.zeros(2, 5, requires_grad=True)
    labels = torch.tensor([LABELS[0], [0, 0, 0, -1, 0]])
    out = residual_objectness_cascade(o0, [r1], labels)
    assert math.isinf(out.min_pos[0][1].item())
    assert not out.gates[0][1].any()
    assert out.loss_res[0].item() == pytest.approx(sp(-2) + sp(0.5) + sp(0), rel=1e-6)
    expected_obj = sp(-2) + sp(0.5) + sp(0) + sp(-3) + sp(0.3) + sp(-0.2) + sp(4.0) + sp(0.0)
    assert out.loss_obj.item() == pytest.approx(expected_obj, rel=1e-6)
    (out.loss_obj + out.loss_res[0]).backward()
    assert torch.isfinite(o0.grad).all() and torch.isfinite(r1.grad).all()


@pytest.mark.parametrize("gate", ["image", "batch"])
def test_batch_without_positives_gives_zero_residual_loss(gate):
    o0 = torch.randn(2, 7)
    r1 = torch.randn(2, 7, requires_grad=True)
    labels = torch.tensor([[0, 0, -1, 0, 0, 0, 0], [0] * 7])
    out = residual_objectness_cascade(o0, [r1], labels, gate=gate)
    assert out.loss_res[0].item() == 0.0
    assert torch.isfinite(out.loss_obj)
    out.loss_res[0].backward()  # still connected to r_1 (zero gradient, not None): no unused params in DDP
    assert r1.grad is not None and r1.grad.abs().sum().item() == 0.0
    stats = cascade_statistics(out, labels)
    assert "obj_pos_t0" not in stats and "min_pos_score_t1" not in stats
    assert stats["gated_t1"] == 0.0 and all(math.isfinite(v) for v in stats.values())


def test_official_mode_one_bce_on_the_sum():
    """Authors'-code mode: one BCE on o_0 + r_1 + r_2 = [2, 8.5, 1, 2, 8] over valid anchors 0-3:
    sp(-2) + sp(8.5) + sp(-1) + sp(2); no gate, gradients reach o_0 and every r_t equally."""
    o0, r1, r2 = (torch.tensor(x, requires_grad=True) for x in (O0, R1, R2))
    loss = summed_objectness_loss(o0, [r1, r2], torch.tensor(LABELS))
    assert loss.item() == pytest.approx(sp(-2) + sp(8.5) + sp(-1) + sp(2), rel=1e-6)
    loss.backward()
    assert torch.equal(o0.grad, r1.grad) and torch.equal(o0.grad, r2.grad)
    assert o0.grad[0, 4].item() == 0.0 and o0.grad[0, 1].item() > 0


def test_final_objectness_and_fusion():
    o0, r1, r2 = torch.tensor(O0), torch.tensor(R1), torch.tensor(R2)
    assert final_objectness(o0, [r1, r2]).tolist() == [[2.0, 8.5, 1.0, 2.0, 8.0]]
    assert final_objectness(o0, [r1, r2], step=1).tolist() == [[3.0, -1.5, 0.5, 2.0, 8.0]]
    assert torch.equal(final_objectness(o0, [r1, r2], step=0), o0)
    with pytest.raises(ValueError, match="step=3"):
        final_objectness(o0, [r1, r2], step=3)
    obj = torch.tensor([[0.0], [2.0]])
    cls = torch.tensor([[0.0, -1.0], [1.0, 3.0]])
    fused = fuse_scores(obj, cls)
    assert fused.shape == (2, 2)
    assert fused[0, 0].item() == pytest.approx(0.25)
    assert fused[1, 1].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item() * torch.sigmoid(torch.tensor(3.0)).item())


def test_statistics_hand_computed():
    """Mean sigmoid(o_t) over positives {0, 2} and negatives {1, 3}; gated counts 3 and 2 per image;
    min positive scores sigmoid(0) = 0.5 and sigmoid(0.5)."""
    out, _ = _run()
    stats = cascade_statistics(out, torch.tensor(LABELS))
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert stats["obj_pos_t0"] == pytest.approx((s(2) + s(0)) / 2, rel=1e-6)
    assert stats["obj_neg_t0"] == pytest.approx((s(0.5) + s(-3)) / 2, rel=1e-6)
    assert stats["obj_pos_t2"] == pytest.approx((s(2) + s(1)) / 2, rel=1e-6)
    assert stats["obj_neg_t1"] == pytest.approx((s(-1.5) + s(-3)) / 2, rel=1e-6)
    assert stats["gated_t1"] == 3.0 and stats["gated_t2"] == 2.0
    assert stats["min_pos_score_t1"] == pytest.approx(0.5)
    assert stats["min_pos_score_t2"] == pytest.approx(s(0.5), rel=1e-6)


def test_statistics_with_a_single_positive_or_no_negative():
    """One positive (logit 0 -> 0.5) and one negative (ln 3 -> 0.75) are enough for both means; with no
    negative at all obj_neg_t0 is omitted, not logged as 0."""
    one = residual_objectness_cascade(torch.tensor([[0.0, math.log(3.0), 5.0]]), [], torch.tensor([[1, 0, -1]]))
    stats = cascade_statistics(one, torch.tensor([[1, 0, -1]]))
    assert stats == pytest.approx({"obj_pos_t0": 0.5, "obj_neg_t0": 0.75})
    no_neg = residual_objectness_cascade(torch.tensor([[0.0, 5.0]]), [], torch.tensor([[1, -1]]))
    assert cascade_statistics(no_neg, torch.tensor([[1, -1]])) == pytest.approx({"obj_pos_t0": 0.5})


def test_statistics_stay_finite_when_the_only_positive_logit_is_minus_inf():
    """A positive whose logit overflowed to -inf (e.g. fp16): the gate threshold is -inf, not finite, so
    no image contributes to min_pos_score_t1; it is logged as 0 (= sigmoid(-inf)), never as 0/0 = NaN.
    Everything else is plain: sigmoid(-inf) = 0 for the positive, sigmoid(0) = 0.5 for the negative, and
    the threshold -inf gates both anchors."""
    labels = torch.tensor([[1, 0]])
    out = residual_objectness_cascade(torch.tensor([[-math.inf, 0.0]]), [torch.zeros(1, 2)], labels)
    stats = cascade_statistics(out, labels)
    assert stats == {"obj_pos_t0": 0.0, "obj_neg_t0": 0.5, "obj_pos_t1": 0.0, "obj_neg_t1": 0.5,
                     "gated_t1": 2.0, "min_pos_score_t1": 0.0}


def test_bad_options_raise():
    with pytest.raises(ValueError, match="gate='sample'"):
        residual_objectness_cascade(torch.zeros(1, 2), [], torch.zeros(1, 2, dtype=torch.long), gate="sample")
    with pytest.raises(AssertionError):
        residual_objectness_cascade(torch.zeros(1, 2), [torch.zeros(1, 3)], torch.zeros(1, 2, dtype=torch.long))


# Mutation survivors, explained (python ../shared/tools/mutate.py --tests tests/test_resobj_cascade.py
# projects/ResObj/resobj/cascade.py):
# - cascade.py `enumerate(residuals, start=1)` in _check_inputs: the index only numbers the residual in
#   an assertion message; start=0 changes the message text, not a result.
# - cascade.py `labels.new_zeros((), dtype=torch.float32)` without dtype in cascade_statistics: the 0-dim
#   integer zero is promoted to float by torch.where against the float scores; same values.
# - cascade.py `torch.tensor(float("inf"), dtype=objectness.dtype, ...)` without dtype: a 0-dim float32
#   +inf is promoted to the logits' dtype by torch.where (0-dim tensors never widen a dimensioned one).
# - cascade.py `n_pos.clamp(min=1)` / `n_neg.clamp(min=1)` in cascade_statistics with min=0: the mean is
#   then 0/0 = NaN only when the set is empty, and exactly then the key is dropped before logging.
# - cascade.py `torch.tensor(float("inf"), ..., device=objectness.device)` without device: torch.where
#   takes a 0-dim CPU tensor as a scalar next to tensors of any device (TensorIterator's CPU-scalar rule;
#   checked on the meta device, where the result stays on meta), so CUDA logits give the same result.
