"""Scale-balanced weights (paper §3.2, Eq. 3, Table 1): pure torch, runs without detectron2."""
import math

import pytest
import torch

from scale_balanced.matching import record_calls, record_matches
from scale_balanced.weights import (
    WEIGHTING_FORMS,
    anchor_weights,
    batch_scale_balanced_weights,
    match_counts,
    scale_balanced_weights,
    size_class,
    size_class_stats,
    weight_from_count,
)


def test_eq3_by_hand():
    """W = β(ln M + α)/M with α=1, β=3: M=1 -> 3·(0+1)/1 = 3; M=10 -> 3·(2.302585+1)/10 = 0.990776."""
    w = weight_from_count(torch.tensor([1, 10]))
    assert w[0].item() == pytest.approx(3.0)
    assert w[1].item() == pytest.approx(0.990776, abs=1e-6)
    # alpha/beta are honoured: M=e, α=2, β=1 -> (1+2)/e.
    w = weight_from_count(torch.tensor([math.e]), alpha=2.0, beta=1.0)
    assert w.item() == pytest.approx(3 / math.e, rel=1e-6)


@pytest.mark.parametrize(
    "form,expected",
    [
        # M = 1, 4, 10, computed by hand (natural log); the Table 1 rows carry β = 3, "const" does not.
        ("const", [1.0, 1.0, 1.0]),
        ("inv_log", [3.0, 3 / (math.log(4) + 1), 3 / (math.log(10) + 1)]),  # 3, 1.25718, 0.90837
        ("inv_sqrt", [3.0, 1.5, 3 / math.sqrt(10)]),
        ("inv", [3.0, 0.75, 0.3]),
        ("log_over_m", [3.0, 3 * (math.log(4) + 1) / 4, 3 * (math.log(10) + 1) / 10]),  # 3, 1.78972, 0.99078
        ("log_over_m_unscaled", [1.0, (math.log(4) + 1) / 4, (math.log(10) + 1) / 10]),  # 1, 0.59657, 0.33026
        ("scale_balanced", [3.0, 3 * (math.log(4) + 1) / 4, 3 * (math.log(10) + 1) / 10]),
    ],
)
def test_table1_forms(form, expected):
    w = weight_from_count(torch.tensor([1, 4, 10]), form=form)
    assert w.tolist() == pytest.approx(expected, rel=1e-6)


def test_table1_forms_scale_with_beta_and_log_over_m_is_eq3_at_alpha_1():
    """Table 1's last row (78.2) is Table 2's SSD300 with α=1, β=3: log_over_m equals Eq. 3 at α=1 for
    any β; each Table 1 row scales linearly with β; const and the unscaled extra ignore β."""
    m = torch.tensor([1, 2, 7, 30])
    for beta in (1.0, 3.0, 0.5):
        assert torch.allclose(weight_from_count(m, form="log_over_m", beta=beta),
                              weight_from_count(m, form="scale_balanced", alpha=1.0, beta=beta))
        for form in ("inv_log", "inv_sqrt", "inv", "log_over_m"):
            assert torch.allclose(weight_from_count(m, form=form, beta=beta), beta * weight_from_count(m, form=form, beta=1.0))
        for form in ("const", "log_over_m_unscaled"):
            assert torch.equal(weight_from_count(m, form=form, beta=beta), weight_from_count(m, form=form, beta=1.0))
    assert not torch.allclose(weight_from_count(m, form="log_over_m", alpha=2.0), weight_from_count(m, form="scale_balanced", alpha=2.0))


def test_every_form_tested_and_decreasing_or_flat():
    assert set(WEIGHTING_FORMS) == {
        "scale_balanced", "const", "inv_log", "inv_sqrt", "inv", "log_over_m", "log_over_m_unscaled"}
    m = torch.arange(1, 200)
    for form in WEIGHTING_FORMS:
        w = weight_from_count(m, form=form)
        assert torch.all(w > 0) and torch.all(w[1:] <= w[:-1] + 1e-7), form


def test_zero_matches_give_zero_weight_not_nan():
    w = weight_from_count(torch.tensor([0, 0, 3]))
    assert torch.isfinite(w).all() and w[:2].tolist() == [0.0, 0.0]


def test_unknown_form_raises_naming_it():
    with pytest.raises(ValueError, match="'focal'"):
        weight_from_count(torch.tensor([1]), form="focal")


def crafted_matching():
    """8 anchors, 3 ground truths, as a detectron2 Matcher(allow_low_quality_matches=True) outputs:

    anchor : 0  1  2  3   4  5  6  7
    matched: 0  0  1  2   1  0  2  1     (argmax ground truth of every anchor)
    label  : 1  1  1  -1  0  1  1  0     (anchor 3 ignored; anchor 6 a forced low-quality match of GT 2
                                          whose best IoU is < 0.5; anchors 4, 7 negative)
    M = [3, 1, 1]: the ignored anchor 3 does not count toward GT 2, the forced anchor 6 does.
    """
    matched = torch.tensor([0, 0, 1, 2, 1, 0, 2, 1])
    labels = torch.tensor([1, 1, 1, -1, 0, 1, 1, 0], dtype=torch.int8)
    return matched, labels


def test_counts_and_anchor_weights_on_crafted_matching():
    matched, labels = crafted_matching()
    assert match_counts(matched, labels, 3).tolist() == [3, 1, 1]
    res = scale_balanced_weights(matched, labels, 3)
    w3 = 3 * (math.log(3) + 1) / 3  # 2.098612
    assert res.gt_weights.tolist() == pytest.approx([w3, 3.0, 3.0])
    assert res.anchor_weights.tolist() == pytest.approx([w3, w3, 3.0, 0.0, 1.0, w3, 3.0, 1.0])


def test_gt_with_no_positive_anchor_and_image_without_gt():
    matched = torch.tensor([0, 0, 1])
    labels = torch.tensor([1, 0, -1], dtype=torch.int8)
    res = scale_balanced_weights(matched, labels, 3)  # GTs 1 and 2 have no positive anchor
    assert res.counts.tolist() == [1, 0, 0]
    assert res.anchor_weights.tolist() == [3.0, 1.0, 0.0]
    # No ground truth: the matcher labels every anchor negative (or ignored); weights 1 / 0.
    res = scale_balanced_weights(torch.zeros(4, dtype=torch.int64), torch.tensor([0, 0, -1, 0]), 0)
    assert res.counts.numel() == 0 and res.anchor_weights.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_count_labels_differ_from_loss_labels():
    """RPN case: M counted on the matcher's labels, weights applied to the subsampled labels."""
    matched = torch.tensor([0, 0, 0, 1])
    matcher_labels = torch.tensor([1, 1, 1, 1])
    sampled = torch.tensor([1, -1, -1, 1])  # two positives dropped by subsampling
    res = scale_balanced_weights(matched, sampled, 2, count_labels=matcher_labels)
    assert res.counts.tolist() == [3, 1]
    assert res.anchor_weights.tolist() == pytest.approx([2.098612, 0.0, 0.0, 3.0], rel=1e-6)


def test_size_classes_and_stats():
    """COCO's classes, upper bounds inclusive: 32² small, 32²+1 medium, 96² medium, 96²+1 large."""
    areas = torch.tensor([31.0**2, 32.0**2, 32.0**2 + 1, 96.0**2, 96.0**2 + 1])
    assert size_class(areas).tolist() == [0, 0, 1, 1, 2]
    assert size_class(torch.tensor([1024, 1025])).tolist() == [0, 1]  # integer areas too
    counts = torch.tensor([1, 2, 0, 4, 10])
    stats = size_class_stats(counts, weight_from_count(counts), areas)
    assert stats["scb/mean_M_small"] == 1.5 and stats["scb/frac_unmatched_small"] == 0.0
    w2 = 3 * (math.log(2) + 1) / 2
    assert stats["scb/mean_weight_small"] == pytest.approx((3.0 + w2) / 2, rel=1e-6)
    assert stats["scb/mean_M_medium"] == 2.0 and stats["scb/frac_unmatched_medium"] == 0.5
    # mean weight only over matched objects: the medium object with M=0 is left out.
    assert stats["scb/mean_weight_medium"] == pytest.approx(3 * (math.log(4) + 1) / 4, rel=1e-6)
    assert stats["scb/mean_M_large"] == 10.0
    assert stats["scb/mean_weight_large"] == pytest.approx(3 * (math.log(10) + 1) / 10, rel=1e-6)
    assert "scb/mean_M_small" not in size_class_stats(counts[2:], counts[2:].float(), areas[2:])
    # a class whose objects are all unmatched has no mean weight
    only_unmatched = size_class_stats(torch.tensor([0]), torch.tensor([0.0]), torch.tensor([5000.0]))
    assert only_unmatched == {"scb/mean_M_medium": 0.0, "scb/frac_unmatched_medium": 1.0}


def test_box_areas():
    """w·h of XYXY boxes: 10x20 -> 200, 3x1 -> 3; a box of zero or negative width has area 0."""
    from d2imbalance.evaluation.size_classes import box_areas

    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 8.0, 6.0], [5.0, 5.0, 5.0, 10.0], [5.0, 5.0, 3.0, 10.0]])
    assert box_areas(boxes).tolist() == [200.0, 3.0, 0.0, 0.0]


def test_batch_weights_match_per_image():
    matched, labels = crafted_matching()
    ws, stats = batch_scale_balanced_weights(
        [matched, torch.zeros(8, dtype=torch.int64)],
        [labels, torch.zeros(8, dtype=torch.int8)],
        [torch.tensor([100.0, 2000.0, 20000.0]), torch.zeros(0)],
    )
    assert ws[0].tolist() == scale_balanced_weights(matched, labels, 3).anchor_weights.tolist()
    assert ws[1].tolist() == [1.0] * 8
    assert stats["scb/mean_M_small"] == 3.0 and stats["scb/mean_M_large"] == 1.0


def test_crowded_image_memory_and_no_dense_matrix():
    """1000 ground truths, 120k anchors: no allocation near the (G, R) IoU matrix detectron2 builds
    (4·G·R bytes = 480 MB); the largest one is an (R,) int64 vector."""
    from torch.profiler import ProfilerActivity, profile

    g, r = 1000, 120_000
    gen = torch.Generator().manual_seed(0)
    matched = torch.randint(0, g, (r,), generator=gen)
    labels = torch.randint(-1, 2, (r,), generator=gen).to(torch.int8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        res = scale_balanced_weights(matched, labels, g)
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest <= 8 * r + 4096, f"largest allocation {largest} B for R={r}"
    assert res.counts.sum().item() == (labels == 1).sum().item()


def test_recorder_restores_attribute_and_method():
    class Owner:
        def __init__(self):
            self.matcher = lambda x: (x, x * 0)

        def method(self, x):
            return x + 1

    o = Owner()
    original = o.matcher
    with record_matches(o, "matcher") as matches, record_calls(o, "method") as calls:
        o.matcher(torch.tensor([1, 2]))
        o.method(3)
        assert o.matcher.__name__ == "<lambda>"  # attribute access reaches the wrapped callable
    assert len(matches) == 1 and matches[0][1].tolist() == [0, 0] and calls == [4]
    assert o.matcher is original and "method" not in vars(o)
    with pytest.raises(RuntimeError):
        with record_calls(o, "matcher"):
            raise RuntimeError
    assert o.matcher is original


def test_recorded_labels_survive_in_place_edits_by_the_caller():
    """RPN.label_and_sample_anchors subsamples the matcher's label tensor in place; the recorded labels
    (from which M is counted unless count_sampled) must stay the matcher's."""
    class Owner:
        def __init__(self):
            self.labels = torch.tensor([1, 1, 1, 0])
            self.anchor_matcher = lambda iou: (torch.zeros(4, dtype=torch.int64), self.labels)

    o = Owner()
    with record_matches(o) as matches:
        _, labels = o.anchor_matcher(None)
        labels[1:3] = -1  # subsampling drops two positives
    assert matches[0][1].tolist() == [1, 1, 1, 0] and o.labels.tolist() == [1, -1, -1, 0]
    assert match_counts(matches[0][0], matches[0][1], 1).tolist() == [3]


# Mutation survivors, explained (../shared/tools/mutate.py on scale_balanced/weights.py):
# * `m.clamp(min=1.0)` -> `min=0.0` in weight_from_count: the clamp only keeps the formula finite for
#   M = 0, whose value torch.where then replaces by 0 either way, so the mutant is equivalent.
