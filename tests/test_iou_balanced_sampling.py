"""iou_balanced.sampling without detectron2: per-bin counts worked out by hand on crafted IoU sets, the
floor, short bins, small and empty candidate sets, determinism, uniformity inside a bin, the authors'
interval, instance-balanced positives, the training signals and the argument checks.

The crafted negatives: IoU 0 (50), 0.1 (10), 0.25 (40), 0.45 (30). The paper's bins split [0, 0.5) into
[0, 1/6), [1/6, 1/3), [1/3, 1/2), so they hold 60 / 40 / 30 negatives.
"""
import subprocess
import sys

import pytest
import torch

from iou_balanced.sampling import (
    HYPERPARAMETERS,
    check_iou_balanced_options,
    iou_balanced_scalars,
    iou_bins,
    matcher_negative_iou_top,
    negative_bin_counts,
    sample_instance_balanced_positives,
    sample_iou_balanced_negatives,
    subsample_labels_iou_balanced,
)

PAPER_BINS = (0.0, 0.5)


def crafted(counts=((0.0, 50), (0.1, 10), (0.25, 40), (0.45, 30))):
    """(R,) IoUs with ``count`` proposals at each IoU value, and an all-True candidate mask."""
    ious = torch.cat([torch.full((n,), v) for v, n in counts])
    return ious, torch.ones(len(ious), dtype=torch.bool)


def per_value(ious, idx):
    """{IoU value: how many of the drawn indices have it}."""
    values, counts = torch.unique(ious[idx], return_counts=True)
    return {round(v, 4): c for v, c in zip(values.tolist(), counts.tolist())}


def paper_bin_counts(ious, idx):
    return torch.bincount(iou_bins(ious[idx], 3, *PAPER_BINS), minlength=3).tolist()


def draw(ious, candidates, n, seed=0, **kwargs):
    idx = sample_iou_balanced_negatives(ious, candidates, n, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert idx.unique().numel() == idx.numel(), "an index drawn twice"
    assert candidates[idx].all(), "a non-candidate drawn"
    return idx


def test_iou_bins_by_hand():
    """K = 3 over [0, 0.5): edges 0, 1/6, 1/3, 1/2; outside [0, 0.5) is -1; no interval, no bins."""
    ious = torch.tensor([0.0, 0.1, 0.17, 0.3, 0.34, 0.49, 0.5, 0.9, -0.1])
    assert iou_bins(ious, 3, 0.0, 0.5).tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1]
    assert iou_bins(ious, 2, 0.1, 0.5).tolist() == [-1, 0, 0, 1, 1, 1, -1, -1, -1]  # edges 0.1, 0.3, 0.5
    assert iou_bins(ious, 3, 0.0, 0.0).tolist() == [-1] * 9
    assert iou_bins(ious, 3, 0.0, torch.tensor(0.9)).tolist() == [0, 0, 0, 1, 1, 1, 1, -1, -1]


def test_full_bins_each_give_their_equal_share():
    """N = 60, K = 3: 20 from each bin (Eq. 2: p_k = 20/60, 20/40, 20/30); random sampling would
    draw 60 * (60, 40, 30) / 130 = (27.7, 18.5, 13.8) in expectation."""
    ious, cand = crafted()
    idx = draw(ious, cand, 60)
    assert paper_bin_counts(ious, idx) == [20, 20, 20]
    # N = 62: 20 per bin (62 // 3) and the 2 left over at random from the binned negatives left.
    counts = paper_bin_counts(ious, draw(ious, cand, 62))
    assert sum(counts) == 62 and all(20 <= c <= 22 for c in counts)


def test_a_share_of_one_per_bin():
    """N = 3, K = 3: one negative from each bin, however unequal the bins (60, 40, 30); a uniform draw
    would miss a bin in most seeds."""
    ious, cand = crafted()
    for seed in range(5):
        assert paper_bin_counts(ious, draw(ious, cand, 3, seed=seed)) == [1, 1, 1]


def test_a_short_bin_gives_all_it_has_and_the_rest_is_refilled():
    """Bin 2 holds 6 negatives (IoU 0.45) but its share of N = 48 is 16: all 6 are drawn, and the
    shortfall of 10 comes at random from the 44 + 24 left in bins 0 and 1 (each already at 16)."""
    ious, cand = crafted(((0.0, 50), (0.1, 10), (0.25, 40), (0.45, 6)))
    for seed in range(5):
        b0, b1, b2 = paper_bin_counts(ious, draw(ious, cand, 48, seed=seed))
        assert b2 == 6 and b0 >= 16 and b1 >= 16 and b0 + b1 + b2 == 48


def test_fewer_negatives_than_the_quota_are_all_taken():
    ious, cand = crafted(((0.0, 5), (0.45, 3)))
    assert draw(ious, cand, 20).tolist() == list(range(8))
    assert draw(ious, cand, 8).tolist() == list(range(8))
    cand[2] = False  # candidates only
    assert draw(ious, cand, 20).tolist() == [0, 1, 3, 4, 5, 6, 7]


def test_no_negatives_or_no_quota_give_nothing():
    ious, cand = crafted()
    assert draw(ious, torch.zeros_like(cand), 30).numel() == 0
    assert draw(ious, cand, 0).numel() == 0
    empty = torch.zeros(0)
    assert sample_iou_balanced_negatives(empty, empty.bool(), 10).numel() == 0


def test_floor_with_zero_fraction_is_only_drawn_when_the_bins_run_short():
    """floor_thr = 0.1: the 60 negatives of IoU <= 0.1 form the floor; the bins split [0.1, 0.5) at
    0.233 and 0.367, so they hold 0 / 40 (IoU 0.25) / 30 (IoU 0.45).
    N = 60: 20 + 20 from bins 1, 2 and 20 refilled from the 30 binned left; the floor gets nothing.
    N = 80: only 70 are binned, all taken, and the floor gives the other 10."""
    ious, cand = crafted()
    idx = draw(ious, cand, 60, floor_thr=0.1)
    assert (ious[idx] > 0.1).all() and len(idx) == 60
    counts = per_value(ious, idx)
    assert counts[0.25] >= 20 and counts[0.45] >= 20
    idx = draw(ious, cand, 80, floor_thr=0.1)
    counts = per_value(ious, idx)
    assert counts[0.25] == 40 and counts[0.45] == 30 and counts.get(0.0, 0) + counts.get(0.1, 0) == 10


def test_floor_fraction_takes_its_share_of_the_quota():
    """floor_thr = 0.1, floor_fraction = 0.5, N = 40: int(40 * 0.5) = 20 from the bins (20 // 3 = 6 from
    each of the two non-empty ones, then 8 refilled), 40 - 20 = 20 from the 60 floor negatives.
    With only 5 negatives in the floor: 20 binned + 5 floor + 15 refilled from the binned left."""
    ious, cand = crafted()
    for seed in range(3):
        idx = draw(ious, cand, 40, seed=seed, floor_thr=0.1, floor_fraction=0.5)
        assert int((ious[idx] <= 0.1).sum()) == 20 and int((ious[idx] > 0.1).sum()) == 20
    ious, cand = crafted(((0.0, 5), (0.25, 40), (0.45, 30)))
    idx = draw(ious, cand, 40, floor_thr=0.1, floor_fraction=0.5)
    assert int((ious[idx] <= 0.1).sum()) == 5 and len(idx) == 40
    # Everything from the floor: floor_fraction = 1 leaves the bins a quota of 0.
    ious, cand = crafted()
    idx = draw(ious, cand, 30, floor_thr=0.1, floor_fraction=1.0)
    assert (ious[idx] <= 0.1).all() and len(idx) == 30


def test_floor_threshold_zero_keeps_the_untouched_negatives_out_of_the_bins():
    """floor_thr = 0 (how the authors' code runs): the 50 negatives of IoU exactly 0 are the floor; the
    80 others are binned over [0, 0.5) and cover N = 60 on their own. Bin 0 now holds only the 10 of
    IoU 0.1, all drawn; their shortfall of 10 is refilled from bins 1 and 2 (20 each already)."""
    ious, cand = crafted()
    idx = draw(ious, cand, 60, floor_thr=0.0)
    assert (ious[idx] > 0).all()
    b0, b1, b2 = paper_bin_counts(ious, idx)
    assert b0 == 10 and b1 >= 20 and b2 >= 20 and b0 + b1 + b2 == 60


def test_authors_interval_reaches_the_highest_iou_of_the_image():
    """iou_high = None: the bins split [0, max IoU of all proposals). A ground-truth box appended as a
    proposal has IoU 1, so the bins are [0, 1/3), [1/3, 2/3), [2/3, 1): the 60 + 40 negatives below 1/3
    share one bin, the 30 at IoU 0.45 the next, the top bin is empty. N = 30: 10 + 10, then the 10 of
    the empty bin are refilled at random from the 90 + 20 left."""
    ious, cand = crafted()
    ious = torch.cat([ious, torch.ones(1)])  # the appended ground truth, a positive
    cand = torch.cat([cand, torch.zeros(1, dtype=torch.bool)])
    for seed in range(5):
        idx = draw(ious, cand, 30, seed=seed, iou_high=None)
        low, mid, top = torch.bincount(iou_bins(ious[idx], 3, 0.0, 1.0), minlength=3).tolist()
        assert top == 0 and 10 <= low <= 20 and 10 <= mid <= 20 and low + mid == 30
    # Without positives the top is the negatives' highest IoU, 0.45: the bins are [0, 0.15), [0.15, 0.3),
    # [0.3, 0.45), and the 3 at 0.45 are outside them, drawn only by the refill.
    ious, cand = crafted(((0.0, 10), (0.45, 3)))
    assert len(draw(ious, cand, 6, iou_high=None)) == 6


def test_a_seeded_generator_makes_the_draw_reproducible():
    ious, cand = crafted()
    first = draw(ious, cand, 50, seed=7)
    assert torch.equal(first, draw(ious, cand, 50, seed=7))
    assert not torch.equal(first, draw(ious, cand, 50, seed=8))
    torch.manual_seed(3)
    a = sample_iou_balanced_negatives(ious, cand, 50)
    torch.manual_seed(3)
    assert torch.equal(a, sample_iou_balanced_negatives(ious, cand, 50))


def test_the_draw_inside_a_bin_is_uniform():
    """N = 60 over full bins: each of the 60 negatives of bin 0 is drawn with p_0 = 20/60, each of bin 1
    with 20/40, of bin 2 with 20/30 (Eq. 2). Over 1500 draws a negative's count is Binomial(1500, p_k):
    std <= sqrt(1500 / 4) = 19.4; every count must be within 5 std of 1500 p_k, and the spread of the
    counts inside a bin must match the binomial variance (a chi-square over the bin's members)."""
    ious, cand = crafted()
    g = torch.Generator().manual_seed(0)
    rounds = 1500
    hits = torch.zeros(len(ious))
    for _ in range(rounds):
        hits[sample_iou_balanced_negatives(ious, cand, 60, generator=g)] += 1
    bins = iou_bins(ious, 3, *PAPER_BINS)
    for k, size in enumerate((60, 40, 30)):
        p = 20 / size
        counts = hits[bins == k]
        assert counts.sum() == rounds * 20  # exactly 20 per draw
        expected, var = rounds * p, rounds * p * (1 - p)
        assert ((counts - expected).abs() < 5 * var**0.5).all(), (k, counts.min(), counts.max())
        chi2 = float(((counts - expected) ** 2 / var).sum())  # about chi-square with size - 1 dof
        assert chi2 < size + 5 * (2 * size) ** 0.5, (k, chi2)


def test_instance_balanced_positives_by_hand():
    """Object A has 90 positives, B 5; N = 20: up to round(20/2) + 1 = 11 per object gives 11 + 5 = 16,
    and the 4 missing come from A's 79 left: A 15, B 5 (random sampling would take B's 5 with
    probability C(90, 15) / C(95, 20) = 1e-4). A 90, B 30: 11 + 11 = 22, 2 removed at random."""
    gt = torch.cat([torch.zeros(90, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    cand = torch.ones(95, dtype=torch.bool)
    for seed in range(3):
        idx = sample_instance_balanced_positives(gt, cand, 20, generator=torch.Generator().manual_seed(seed))
        assert torch.bincount(gt[idx], minlength=2).tolist() == [15, 5]
    gt = torch.cat([torch.zeros(90, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    idx = sample_instance_balanced_positives(gt, torch.ones(120, dtype=torch.bool), 20)
    a, b = torch.bincount(gt[idx], minlength=2).tolist()
    assert a + b == 20 and 9 <= a <= 11 and 9 <= b <= 11 and idx.unique().numel() == 20
    # No more candidates than N: all of them.
    cand = torch.zeros(120, dtype=torch.bool)
    cand[:7] = True
    assert sample_instance_balanced_positives(gt, cand, 20).tolist() == list(range(7))


def test_subsample_labels_counts_are_detectron2s():
    """64 samples, 25 % foreground: 16 of 30 positives, 48 of 100 negatives; ignored (-1) never drawn.
    Random positives are the generator's first permutation, as in detectron2's subsample_labels."""
    bg = 3
    labels = torch.cat([torch.full((30,), 1), torch.full((100,), bg), torch.full((20,), -1)])
    ious = torch.cat([torch.full((30,), 0.7), torch.linspace(0, 0.49, 100), torch.full((20,), 0.45)])
    pos, neg = subsample_labels_iou_balanced(labels, ious, 64, 0.25, bg, generator=torch.Generator().manual_seed(1))
    assert len(pos) == 16 and len(neg) == 48
    assert (labels[pos] == 1).all() and (labels[neg] == bg).all()
    expected = torch.randperm(30, generator=torch.Generator().manual_seed(1))[:16]  # positives are 0..29
    assert torch.equal(pos, expected)
    # Few positives: the negatives fill the sample; few negatives: all of them.
    pos, neg = subsample_labels_iou_balanced(labels[25:], ious[25:], 64, 0.25, bg)
    assert (len(pos), len(neg)) == (5, 59)
    pos, neg = subsample_labels_iou_balanced(labels[:40], ious[:40], 64, 0.25, bg)
    assert (len(pos), len(neg)) == (16, 10)
    with pytest.raises(ValueError, match="positive_sampling='per_gt' is not one of"):
        subsample_labels_iou_balanced(labels, ious, 64, 0.25, bg, positive_sampling="per_gt")
    with pytest.raises(ValueError, match="needs gt_index"):
        subsample_labels_iou_balanced(labels, ious, 64, 0.25, bg, positive_sampling="instance_balanced")


def test_matcher_negative_iou_top():
    inf = float("inf")
    assert matcher_negative_iou_top([-inf, 0.5, inf], [0, 1]) == 0.5  # Faster R-CNN's ROI heads
    assert matcher_negative_iou_top([-inf, 0.3, 0.7, inf], [0, -1, 1]) == 0.3  # RPN-style ignore band
    with pytest.raises(ValueError, match=r"labels \[-1, 1\].*bin_range='max_iou'"):
        matcher_negative_iou_top([-inf, 0.5, inf], [-1, 1])
    with pytest.raises(ValueError, match="no background interval with a finite upper IoU"):
        matcher_negative_iou_top([-inf, 0.5, inf], [1, 0])


def test_bin_counts_and_scalars_by_hand():
    """IoUs 0.05, 0.25, 0.45, 0.45 are negatives, 0.7 a positive; drawn: 0.05 and one 0.45.
    Drawn: bins (1, 0, 1), mean IoU 0.25. Candidates: (1, 1, 2), mean IoU 1.2 / 4 = 0.3."""
    ious = torch.tensor([0.05, 0.25, 0.45, 0.45, 0.7])
    cand = torch.tensor([True, True, True, True, False])
    counts = negative_bin_counts(ious, cand, torch.tensor([0, 2]), num_bins=3, iou_high=0.5, floor_thr=None)
    assert torch.allclose(counts, torch.tensor([[1, 0, 1, 0, 0.5], [1, 1, 2, 0, 1.2]]))
    scalars = iou_balanced_scalars(counts * 2)  # two such images
    assert scalars == pytest.approx({
        "bg_fraction_bin0": 0.5, "bg_fraction_bin1": 0.0, "bg_fraction_bin2": 0.5, "bg_fraction_outside": 0.0,
        "bg_mean_iou": 0.25, "candidate_fraction_bin0": 0.25, "candidate_fraction_bin1": 0.25,
        "candidate_fraction_bin2": 0.5, "candidate_fraction_outside": 0.0, "candidate_mean_iou": 0.3})
    # The floor (IoU <= 0.1) counts outside the bins, which become [0.1, 0.233), [0.233, 0.367), [0.367, 0.5).
    # The authors' interval [0, 0.7) has edges 0.233 and 0.467: 0.25 and both 0.45 share bin 1.
    counts = negative_bin_counts(ious, cand, torch.tensor([0, 2]), num_bins=3, iou_high=0.5, floor_thr=0.1)
    assert counts[1, :4].tolist() == [0, 1, 2, 1]
    assert iou_balanced_scalars(counts)["candidate_fraction_outside"] == pytest.approx(1 / 4)
    # One drawn negative (IoU 0.05, in the floor) is enough for the drawn keys.
    one = iou_balanced_scalars(negative_bin_counts(ious, cand, torch.tensor([0]), num_bins=3, iou_high=0.5, floor_thr=0.1))
    assert (one["bg_fraction_outside"], one["bg_fraction_bin0"]) == (1.0, 0.0)
    counts = negative_bin_counts(ious, cand, torch.tensor([0, 2]), num_bins=3, iou_high=None, floor_thr=None)
    assert counts[1, :4].tolist() == [1, 3, 0, 0]
    # Nothing drawn: the drawn keys are left out, not NaN.
    counts = negative_bin_counts(ious, cand, torch.zeros(0, dtype=torch.long), num_bins=3, iou_high=0.5, floor_thr=None)
    assert set(iou_balanced_scalars(counts)) == {f"candidate_fraction_bin{k}" for k in range(3)} | {
        "candidate_fraction_outside", "candidate_mean_iou"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_bins=0), r"num_bins=0 must be an integer >= 1"),
        (dict(num_bins=2.5), r"num_bins=2.5 must be an integer"),
        (dict(num_bins=True), r"num_bins=True must be an integer"),
        (dict(floor_thr=-1), r"floor_thr=-1 must be None .* mmdetection's floor_thr=-1 \(no floor\) is floor_thr=None"),
        (dict(floor_thr=1.0), r"floor_thr=1.0 must be None \(no floor, the paper\) or in \[0, 1\)"),
        (dict(floor_thr=0.5, iou_high=0.5), r"floor_thr=0.5 must be below the top of the binned interval \(0.5\)"),
        (dict(floor_fraction=1.5, floor_thr=0.1), r"floor_fraction=1.5 must be in \[0, 1\]"),
        (dict(floor_fraction=-0.1), r"floor_fraction=-0.1 must be in \[0, 1\]"),
        (dict(floor_fraction=0.3), r"floor_fraction=0.3 takes a share .* floor_thr=None .* set floor_thr"),
    ],
)
def test_bad_options_raise_naming_the_value(kwargs, message):
    options = {**dict(num_bins=3, floor_thr=None, floor_fraction=0.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        check_iou_balanced_options(**options)
    ious, cand = crafted()
    with pytest.raises(ValueError, match=message):
        sample_iou_balanced_negatives(ious, cand, 10, **options)


def test_hyperparameters_are_the_roi_sampling_plus_k():
    """What IoU-balanced sampling adds (K) to the ROI sampling it keeps (512 per image, 25 %): 3, the
    review's count (papers/001 Table 1)."""
    assert [(h.name, h.default) for h in HYPERPARAMETERS] == [
        ("batch_size_per_image", 512), ("positive_fraction", 0.25), ("num_bins", 3)]
    assert "Eq. 2" in HYPERPARAMETERS[2].meaning


def test_sampler_imports_without_detectron2():
    code = (
        "import sys; sys.modules['detectron2'] = None\n"
        "import iou_balanced, iou_balanced.sampling\n"
        "assert not hasattr(iou_balanced, 'IoUBalancedROIHeads')\n"
        "try:\n"
        "    import iou_balanced.roi_heads\n"
        "except ImportError as e:\n"
        "    print('MESSAGE', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MESSAGE iou_balanced.roi_heads needs detectron2" in result.stdout
