"""Pure-torch tests of the distributional ranking loss (drloss.dr_loss); they need no detectron2."""
import inspect
import math

import pytest
import torch

from drloss.dr_loss import (
    DEFAULT_NEG_LAMBDA,
    DR_OPTIONS,
    HYPERPARAMETERS,
    DRLossSettings,
    check_dr_options,
    dr_loss,
    dr_statistics,
    sigmoid_dr_loss,
    smoothed_logistic,
)

TAU, L, GAMMA = 4.0, 6.0, 0.5

# One image, one class (K = 1), six anchors: positives 0, 1 (label 0), negatives 2, 3, 4 (label K = 1
# = background), anchor 5 ignored (label -1) although it scores 0.8.
PROBS = [[[0.6], [0.9], [0.3], [0.2], [0.1], [0.8]]]
LABELS = [[0, 0, 1, 1, 1, -1]]

# Hand computation with the defaults λ_+ = 1, λ_- = 0.1 / ln 3.5, γ = 0.5, L = 6, τ = 4:
#   q_-: exp(p / λ_-) = 3.5^(10 p) = 3.5, 12.25, 42.875 for p = 0.1, 0.2, 0.3, i.e. 4 : 14 : 49 (sum 67),
#        q_- = (4, 14, 49) / 67;  P_- = (0.1*4 + 0.2*14 + 0.3*49) / 67 = 17.9 / 67 = 0.2671642.
#   q_+: exp(-p / λ_+) = e^-0.6, e^-0.9, i.e. 1 : e^-0.3 = 1 : 0.7408182,
#        q_+ = (0.5744425, 0.4255575) for p = (0.6, 0.9);
#        P_+ = (0.6 + 0.9 * 0.7408182) / 1.7408182 = 0.7276672.
#   z = P_- - P_+ + γ = 0.2671642 - 0.7276672 + 0.5 = 0.0394969
#   ℓ(z) = ln(1 + e^(6 z)) / 6 = ln(1 + e^0.2369816) / 6 = ln(2.2674178) / 6 = 0.1364403
#   loss = τ ℓ = 0.5457611 (one image: the mean over images is the same)
P_NEG = 17.9 / 67
P_POS = (0.6 + 0.9 * math.exp(-0.3)) / (1 + math.exp(-0.3))
HAND_TERM = 0.1364403
HAND_LOSS = 0.5457611


def run(probs=PROBS, labels=LABELS, requires_grad=False, **kwargs):
    p = torch.tensor(probs, dtype=torch.float64, requires_grad=requires_grad)
    return dr_loss(p, torch.tensor(labels), **kwargs), p


def ref_term(pos, neg, pos_lambda=1.0, neg_lambda=DEFAULT_NEG_LAMBDA, margin=GAMMA, scale=L):
    """One DR term the way the authors' code writes it: softmax on the gathered scores, P_+ = 1
    without positives, an empty negative set summing to 0."""
    neg_dist = (torch.softmax(neg / neg_lambda, 0) * neg).sum() if neg.numel() else torch.zeros((), dtype=neg.dtype)
    pos_dist = (torch.softmax(-pos / pos_lambda, 0) * pos).sum() if pos.numel() else 1.0
    return torch.log(1 + torch.exp(scale * (neg_dist - pos_dist + margin))) / scale


def ref_loss(probs, labels, scope="image", class_grouping="pooled", tau=TAU, **kwargs):
    """The loss with Python loops over images and classes and boolean indexing (no code shared with
    drloss.dr_loss)."""
    n, _, k = probs.shape
    onehot = torch.stack([labels == c for c in range(k)], dim=-1)
    neg_mask = (labels >= 0)[..., None] & ~onehot
    images = [slice(i, i + 1) for i in range(n)] if scope == "image" else [slice(0, n)]
    classes = [slice(c, c + 1) for c in range(k)] if class_grouping == "per_class" else [slice(0, k)]
    total = 0.0
    for im in images:
        for cl in classes:
            p = probs[im, :, cl]
            total = total + ref_term(p[onehot[im, :, cl]], p[neg_mask[im, :, cl]], **kwargs)
    return tau * total / (n if scope == "image" else 1)


# ---------------------------------------------------------------- the hand-computed example


def test_hand_computed_example():
    out, _ = run()
    assert out.expected_neg.tolist() == pytest.approx([0.2671642], abs=1e-7)
    assert out.expected_neg.item() == pytest.approx(P_NEG, rel=1e-12)
    assert out.expected_pos.tolist() == pytest.approx([0.7276672], abs=1e-7)
    assert out.expected_pos.item() == pytest.approx(P_POS, rel=1e-12)
    assert out.terms.tolist() == pytest.approx([HAND_TERM], abs=1e-7)
    assert out.loss.item() == pytest.approx(HAND_LOSS, abs=1e-7)
    assert out.has_pos.tolist() == [True] and out.has_neg.tolist() == [True]
    assert out.mean_pos.tolist() == pytest.approx([0.75]) and out.mean_neg.tolist() == pytest.approx([0.2])


def test_gradients_weight_hard_candidates_by_q():
    """dloss/dp through P only, with q fixed, is τ σ(Lz) q (negatives) and -τ σ(Lz) q (positives); the
    full gradient adds dq/dp. Hard candidates get the larger push: the 0.6 positive more than the 0.9 one,
    the 0.3 negative most. The ignored anchor gets exactly 0."""
    out, p = run(requires_grad=True)
    out.loss.backward()
    g = p.grad[0, :, 0]
    sig = 1 / (1 + math.exp(-L * (P_NEG - P_POS + GAMMA)))
    # d P_-/d p_j = q_j (1 + (p_j - P_-) / λ_-) for the softmax-weighted mean; likewise for the softmin.
    q_neg = [4 / 67, 14 / 67, 49 / 67]
    q_pos = [1 / (1 + math.exp(-0.3)), math.exp(-0.3) / (1 + math.exp(-0.3))]
    for j, (pj, qj) in enumerate(zip([0.3, 0.2, 0.1], reversed(q_neg))):
        assert g[2 + j].item() == pytest.approx(TAU * sig * qj * (1 + (pj - P_NEG) / DEFAULT_NEG_LAMBDA), rel=1e-9)
    for i, (pi, qi) in enumerate(zip([0.6, 0.9], q_pos)):
        assert g[i].item() == pytest.approx(-TAU * sig * qi * (1 - (pi - P_POS)), rel=1e-9)
    assert g[5].item() == 0.0
    assert g[0] < g[1] < 0 and g[2] > 0


def test_matches_the_authors_formula():
    expected = ref_loss(torch.tensor(PROBS, dtype=torch.float64), torch.tensor(LABELS)).item()
    assert run()[0].loss.item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- each hyper-parameter


@pytest.mark.parametrize(
    "name,low,high,direction",
    [
        # Higher λ_- flattens q_- towards the plain mean 0.2 < P_- = 0.267: P_- and the loss fall.
        ("neg_lambda", DEFAULT_NEG_LAMBDA, 1.0, "down"),
        # Higher λ_+ flattens q_+ towards the plain mean 0.75 > P_+ = 0.728: P_+ rises, the loss falls.
        ("pos_lambda", 1.0, 10.0, "down"),
        # A wider margin γ asks for a bigger gap: z and the loss rise.
        ("margin", 0.5, 0.8, "up"),
        # Larger L brings ℓ(z) = ln(1 + e^(Lz)) / L down towards the hinge max(z, 0).
        ("logistic_scale", 6.0, 20.0, "down"),
        # τ multiplies.
        ("cls_loss_weight", 4.0, 8.0, "up"),
    ],
)
def test_each_hyperparameter_moves_the_loss_the_expected_way(name, low, high, direction):
    a, b = run(**{name: low})[0].loss.item(), run(**{name: high})[0].loss.item()
    assert (b < a) if direction == "down" else (b > a), (name, a, b)


def test_temperature_limits_give_max_min_and_plain_means():
    """λ → 0: q_- picks the hardest negative (max 0.3), q_+ the hardest positive (min 0.6), without
    overflow in exp(p / λ); λ → ∞: uniform q, the plain means 0.2 and 0.75."""
    sharp, _ = run(pos_lambda=1e-4, neg_lambda=1e-4)
    assert sharp.expected_neg.item() == pytest.approx(0.3) and sharp.expected_pos.item() == pytest.approx(0.6)
    assert torch.isfinite(sharp.loss)
    flat, _ = run(pos_lambda=1e6, neg_lambda=1e6)
    assert flat.expected_neg.item() == pytest.approx(0.2, abs=1e-6)
    assert flat.expected_pos.item() == pytest.approx(0.75, abs=1e-6)


def test_margin_and_scale_by_hand():
    """γ = 0: z = -0.4605031, ℓ = ln(1 + e^(-2.7630184)) / 6 = 0.0101984, loss 0.0407934.
    L = 100: ℓ ≈ hinge z = 0.0394969 plus ln(1 + e^-3.9497) / 100 = 0.0001908: loss 4 * 0.0396877 = 0.1587508.
    τ = 1: the term itself, 0.1364403."""
    assert run(margin=0.0)[0].loss.item() == pytest.approx(4 * math.log1p(math.exp(6 * (P_NEG - P_POS))) / 6, rel=1e-12)
    assert run(margin=0.0)[0].loss.item() == pytest.approx(0.0407934, abs=1e-7)
    assert run(logistic_scale=100.0)[0].loss.item() == pytest.approx(0.1587508, abs=1e-7)
    assert run(cls_loss_weight=1.0)[0].loss.item() == pytest.approx(HAND_TERM, abs=1e-7)


def test_smoothed_logistic():
    z = torch.tensor([-1.0, 0.0, 0.25, 5.0], dtype=torch.float64)
    expected = [math.log1p(math.exp(6 * x)) / 6 for x in z.tolist()]
    assert smoothed_logistic(z, 6.0).tolist() == pytest.approx(expected, rel=1e-12)
    assert smoothed_logistic(torch.tensor([0.0]), 2.0).item() == pytest.approx(math.log(2) / 2)


# ---------------------------------------------------------------- which candidates count


def test_ignored_anchors_are_excluded():
    """Changing the ignored anchor's score changes nothing; labelling it background changes P_-."""
    probs = [[[0.6], [0.9], [0.3], [0.2], [0.1], [0.05]]]
    assert run(probs)[0].loss.item() == pytest.approx(HAND_LOSS, abs=1e-7)
    as_negative, _ = run(labels=[[0, 0, 1, 1, 1, 1]])  # the 0.8 anchor becomes the hardest negative
    assert as_negative.expected_neg.item() > 0.6 and as_negative.loss.item() > HAND_LOSS + 1


def test_other_classes_of_a_positive_anchor_are_negatives():
    """K = 2. Anchor 0 (class 0) scores (0.7, 0.4): 0.7 is its positive, 0.4 a negative (class 1).
    Anchor 1 (background) scores (0.2, 0.1): two negatives. Anchor 2 ignored.
    Pooled: P_+ = 0.7; q_- ∝ 3.5^(10p) = 3.5^4, 3.5^2, 3.5^1 = 150.0625, 12.25, 3.5 (sum 165.8125),
    P_- = (0.4 * 150.0625 + 0.2 * 12.25 + 0.1 * 3.5) / 165.8125 = 62.825 / 165.8125 = 0.3788918.
    Per class: class 0 has P_+ = 0.7 and one negative 0.2 (P_- = 0.2); class 1 has no positive (P_+ = 1)
    and negatives 0.4, 0.1 (3.5^4 : 3.5 = 42.875 : 1, P_- = (0.4 * 42.875 + 0.1) / 43.875 = 0.3931624).
    """
    probs = [[[0.7, 0.4], [0.2, 0.1], [0.9, 0.9]]]
    labels = [[0, 2, -1]]
    pooled, _ = run(probs, labels)
    assert pooled.expected_pos.item() == pytest.approx(0.7)
    assert pooled.expected_neg.item() == pytest.approx(62.825 / 165.8125, rel=1e-12)
    z = 62.825 / 165.8125 - 0.7 + 0.5
    assert pooled.loss.item() == pytest.approx(4 * math.log1p(math.exp(6 * z)) / 6, rel=1e-12)
    per_class, _ = run(probs, labels, class_grouping="per_class")
    assert per_class.expected_pos.tolist() == pytest.approx([0.7, 1.0])
    assert per_class.expected_neg.tolist() == pytest.approx([0.2, (0.4 * 42.875 + 0.1) / 43.875], rel=1e-12)
    assert per_class.has_pos.tolist() == [True, False]
    assert per_class.has_neg.tolist() == [True, True]  # class 0's single negative counts
    terms = [math.log1p(math.exp(6 * (0.2 - 0.7 + 0.5))) / 6, math.log1p(math.exp(6 * (0.3931624 - 1 + 0.5))) / 6]
    assert per_class.terms.tolist() == pytest.approx(terms, rel=1e-6)
    assert per_class.loss.item() == pytest.approx(4 * sum(terms), rel=1e-6)  # summed over classes


# ---------------------------------------------------------------- no positives, no candidates


def test_image_without_positives_uses_p_plus_one():
    """Negatives 0.1, 0.2, 0.3 only: P_+ = 1, z = P_- - 1 + γ = -0.2328358,
    ℓ = ln(1 + e^(-1.3970149)) / 6 = ln(1.2473342) / 6 = 0.0368348, loss 4 ℓ = 0.1473391."""
    out, p = run([[[0.3], [0.2], [0.1]]], [[1, 1, 1]], requires_grad=True)
    assert out.expected_pos.tolist() == [1.0] and out.has_pos.tolist() == [False]
    assert out.loss.item() == pytest.approx(0.1473391, abs=1e-7)
    out.loss.backward()
    # The hard negatives are still pushed down. (Through dq/dp the easiest one, 0.1 < P_-, gets a small
    # negative gradient: raising it would flatten q_- and lower P_-; see the gradient test above.)
    assert torch.isfinite(p.grad).all() and p.grad[0, 0, 0] > p.grad[0, 1, 0] > 0


def test_image_with_every_anchor_ignored():
    """No positives (P_+ = 1) and no negatives (P_- = 0): z = -0.5, ℓ = ln(1 + e^-3) / 6 = 0.0080979,
    loss 0.0323916, and a zero (not NaN) gradient."""
    out, p = run([[[0.3], [0.2]]], [[-1, -1]], requires_grad=True)
    assert out.has_neg.tolist() == [False] and out.expected_neg.tolist() == [0.0]
    assert out.loss.item() == pytest.approx(0.0323916, abs=1e-7)
    out.loss.backward()
    assert p.grad.abs().sum().item() == 0.0


@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("class_grouping", ["pooled", "per_class"])
def test_saturated_logits_give_finite_losses_and_gradients(scope, class_grouping):
    logits = torch.tensor(
        [[[60.0, -60.0], [-60.0, 60.0], [30.0, -30.0]], [[-80.0, -80.0], [80.0, 80.0], [0.0, 0.0]]], requires_grad=True
    )
    labels = torch.tensor([[0, 2, -1], [2, 2, 2]])
    out = sigmoid_dr_loss(logits, labels, scope=scope, class_grouping=class_grouping)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- scope and class grouping


def test_image_scope_is_the_mean_over_images_batch_scope_one_term():
    """Image 1 is the hand example (ℓ_1 = 0.1364403), image 2 has negatives 0.3, 0.2, 0.1 and no object
    (ℓ_2 = 0.0368348). scope="image": τ (ℓ_1 + ℓ_2) / 2 = 0.3465501.
    scope="batch" pools the 2 positives and 6 negatives: q_- ∝ (4, 14, 49, 4, 14, 49), so P_- is still
    0.2671642 and P_+ 0.7276672: one term, τ ℓ_1 = 0.5457611."""
    probs = [PROBS[0], [[0.3], [0.2], [0.1], [0.3], [0.2], [0.1]]]
    labels = [LABELS[0], [1, 1, 1, -1, -1, -1]]
    per_image, _ = run(probs, labels)
    assert per_image.terms.tolist() == pytest.approx([HAND_TERM, 0.0368348], abs=1e-7)
    assert per_image.loss.item() == pytest.approx(0.3465501, abs=1e-7)
    per_batch, _ = run(probs, labels, scope="batch")
    assert per_batch.terms.shape == (1,)
    assert per_batch.loss.item() == pytest.approx(HAND_LOSS, abs=1e-7)


@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("class_grouping", ["pooled", "per_class"])
def test_random_batches_match_the_loop_reference(scope, class_grouping):
    """4 images x 40 anchors x 3 classes with ignored anchors: two with objects, one without and one whose
    anchors are all ignored, against the per-group loop of ref_loss."""
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 40, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(-1, 4, (4, 40), generator=g)
    labels[2] = torch.where(labels[2] >= 0, 3, -1)  # no objects
    labels[3, :] = -1  # nothing valid
    kwargs = dict(pos_lambda=0.7, neg_lambda=0.05, margin=0.3, logistic_scale=4.0)
    out = dr_loss(probs, labels, scope=scope, class_grouping=class_grouping, cls_loss_weight=2.0, **kwargs)
    expected = ref_loss(probs, labels, scope, class_grouping, tau=2.0, pos_lambda=0.7, neg_lambda=0.05, margin=0.3,
                        scale=4.0)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-10)
    num_groups = {("image", "pooled"): 4, ("image", "per_class"): 12, ("batch", "pooled"): 1, ("batch", "per_class"): 3}
    assert out.terms.shape == (num_groups[(scope, class_grouping)],)


def test_each_group_is_stabilised_by_its_own_maximum():
    """λ = 1e-4: the softmax of image 2 (scores near 0.1) must not underflow against image 1's (near 0.9):
    exp((0.1 - 0.9) / 1e-4) = 0 in any float. Each image keeps its own hardest negative and positive."""
    probs = [[[0.9], [0.85], [0.9], [0.8]], [[0.1], [0.05], [0.1], [0.05]]]
    labels = [[0, 1, 0, 1], [0, 1, 0, 1]]
    out, _ = run(probs, labels, pos_lambda=1e-4, neg_lambda=1e-4)
    assert out.expected_neg.tolist() == pytest.approx([0.85, 0.05])
    assert out.expected_pos.tolist() == pytest.approx([0.9, 0.1])
    assert out.has_neg.tolist() == [True, True]


def test_half_precision_scores_are_summed_in_float32():
    """100k candidates at 0.5 give a softmax denominator of 100000 > 65504, the float16 maximum."""
    probs = torch.full((1, 5000, 20), 0.5, dtype=torch.float16)
    labels = torch.full((1, 5000), 20)
    labels[0, 0] = 3
    out = dr_loss(probs, labels)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.expected_neg.item() == pytest.approx(0.5) and out.expected_pos.item() == pytest.approx(0.5)


def test_sigmoid_dr_loss_is_dr_loss_of_sigmoid():
    logits = torch.tensor([[[0.3, -1.0], [2.0, 0.5], [-0.2, 0.1]]])
    labels = torch.tensor([[1, 2, 0]])
    expected = dr_loss(torch.sigmoid(logits), labels).loss.item()
    assert sigmoid_dr_loss(logits, labels).loss.item() == pytest.approx(expected)


# ---------------------------------------------------------------- statistics


def test_statistics_by_hand():
    """Image A: the hand example (P_+ = 0.7276672, P_- = 0.2671642, plain means 0.75 and 0.2; z = 0.039 > 0,
    the margin is violated). Image B: one positive 0.75, one negative 0.25 (P_+ = 0.75, P_- = 0.25, z = 0
    exactly: P_+ >= P_- + γ holds). Image C: every anchor ignored, so it has neither positives nor
    negatives and enters no mean. Expected: expected_pos (0.7276672 + 0.75) / 2, expected_neg
    (0.2671642 + 0.25) / 2, mean_pos 0.75, mean_neg (0.2 + 0.25) / 2, margin_violation 1/2,
    groups_without_pos 1/3 (image C)."""
    probs = [PROBS[0], [[0.75], [0.25], [0.9], [0.9], [0.9], [0.9]], [[0.5]] * 6]
    labels = [LABELS[0], [0, 1, -1, -1, -1, -1], [-1] * 6]
    stats = dr_statistics(run(probs, labels)[0])
    assert stats == pytest.approx(
        {"expected_pos": (P_POS + 0.75) / 2, "mean_pos": 0.75, "expected_neg": (P_NEG + 0.25) / 2,
         "mean_neg": 0.225, "margin_violation": 0.5, "groups_without_pos": 1 / 3},
        rel=1e-6,
    )
    # A wider gap: P_+ - P_- = 0.46 > γ = 0.3, no violation.
    assert dr_statistics(run(margin=0.3)[0])["margin_violation"] == 0.0


def test_statistics_leave_out_empty_sets():
    """No positives anywhere: no expected_pos / mean_pos / margin_violation key (rather than NaN)."""
    stats = dr_statistics(run([[[0.3], [0.2]]], [[1, 1]])[0])
    assert set(stats) == {"expected_neg", "mean_neg", "groups_without_pos"}
    assert stats["groups_without_pos"] == 1.0
    stats = dr_statistics(run([[[0.3], [0.2]]], [[-1, -1]])[0])
    assert set(stats) == {"groups_without_pos"} and all(math.isfinite(v) for v in stats.values())


# ---------------------------------------------------------------- options and declarations


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(pos_lambda=0.0), "pos_lambda=0.0"),
        (dict(neg_lambda=-1.0), "neg_lambda=-1.0"),
        (dict(logistic_scale=0.0), "logistic_scale=0.0"),
        (dict(margin=-0.1), "margin=-0.1"),
        (dict(cls_loss_weight=0.0), "cls_loss_weight=0.0"),
        (dict(scope="gpu"), "scope='gpu'"),
        (dict(class_grouping="classes"), "class_grouping='classes'"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(**kwargs)


def test_declared_hyperparameters_are_the_loss_defaults():
    """Four declared (λ_+, λ_-, γ, L), each a keyword of dr_loss with the declared default; the authors'
    λ_- satisfies exp(0.1 / λ_-) = 3.5."""
    defaults = {k: v.default for k, v in inspect.signature(dr_loss).parameters.items()}
    assert [h.name for h in HYPERPARAMETERS] == ["pos_lambda", "neg_lambda", "margin", "logistic_scale"]
    for h in HYPERPARAMETERS:
        assert defaults[h.name] == h.default and h.meaning
    assert math.exp(0.1 / DEFAULT_NEG_LAMBDA) == pytest.approx(3.5)
    assert (defaults["cls_loss_weight"], defaults["scope"], defaults["class_grouping"]) == (4.0, "image", "pooled")
    check_dr_options(pos_lambda=1.0, neg_lambda=0.1, margin=0.0, logistic_scale=1.0, cls_loss_weight=1.0,
                     scope="batch", class_grouping="per_class")


def test_dr_options_are_the_settings_of_the_loss():
    """Every keyword of dr_loss after (probs, labels); sigmoid_dr_loss passes its **kwargs on to it."""
    assert set(DR_OPTIONS) == set(list(inspect.signature(dr_loss).parameters)[2:])


def test_dr_loss_settings_store_check_and_give_back_every_option():
    options = dict(pos_lambda=2.0, neg_lambda=0.3, margin=0.1, logistic_scale=5.0, cls_loss_weight=3.0,
                   scope="batch", class_grouping="per_class")
    holder = DRLossSettings()
    holder.set_dr_options(**options)
    assert (holder.pos_lambda, holder.scope, holder.class_grouping) == (2.0, "batch", "per_class")
    assert holder.dr_options() == options
    with pytest.raises(ValueError, match="margin=-1"):
        DRLossSettings().set_dr_options(**{**options, "margin": -1})
    with pytest.raises(TypeError, match="set_dr_options takes exactly"):
        DRLossSettings().set_dr_options(**{k: v for k, v in options.items() if k != "scope"})


# Mutation survivors, explained (python ../shared/tools/mutate.py --tests tests/test_drloss_core.py
# projects/DRLoss/drloss/dr_loss.py: 126/135 killed):
# - `.detach()` dropped on the group maximum (_dense_expectation, _segment_expectation): the softmax is
#   invariant to the subtracted constant, so its gradient through the maximum is zero either way.
# - `include_self=False` in the segment maximum: the tensor it reduces into starts at -inf, which never wins.
# - `device=` dropped (torch.full / torch.zeros / torch.arange): equivalent on CPU, where the tests run.
# - `pos_count.clamp_min(1)` / `neg_count.clamp_min(1)` -> 0 in dr_statistics: they only matter when the
#   count is 0, and then the keys they divide for are left out of the statistics.
