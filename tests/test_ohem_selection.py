"""ohem.selection without detectron2: the hardest RoIs by hand on crafted losses and boxes, the NMS among
them (on, off, per label, at other thresholds), fewer RoIs than the budget, ties, mmdetection's positive
cap, the training signals and the argument checks.

The crafted image (boxes (x0, y0, x1, y1), 10 x 10 each unless said):

    index  box                 loss   IoU with A            IoU with B
    0      E (20, 20, 30, 30)  0.4    0                     0
    1      A (0, 0, 10, 10)    0.9    -                     90/110 = 0.818
    2      B (0, 1, 10, 11)    0.8    90/110 = 0.818        -
    3      F (0, 2.5, 10, 12.5) 0.5   75/125 = 0.6          85/115 = 0.739
    4      G (40, 40, 50, 50)  0.3    0                     0

By loss: A, B, F, E, G. NMS at 0.7 keeps A, removes B (0.818 > 0.7), keeps F: it overlaps B by more than
0.7, but B is gone, and A by 0.6 only (greedy NMS, as the paper describes it).
"""
import subprocess
import sys

import pytest
import torch

from ohem.selection import (
    HYPERPARAMETERS,
    check_ohem_options,
    hard_example_ranking,
    ohem_scalars,
    select_hard_examples,
    selection_statistics,
    take_hardest,
)

E, A, B, F, G = (20, 20, 30, 30), (0, 0, 10, 10), (0, 1, 10, 11), (0, 2.5, 10, 12.5), (40, 40, 50, 50)
BOXES = torch.tensor([E, A, B, F, G], dtype=torch.float32)
LOSSES = torch.tensor([0.4, 0.9, 0.8, 0.5, 0.3])


def select(num, **kwargs):
    return select_hard_examples(LOSSES, BOXES, num, **kwargs).tolist()


def test_the_hardest_are_kept_without_nms():
    """No NMS: the 3 highest losses, 0.9 (A), 0.8 (B), 0.5 (F), hardest first."""
    assert select(3, nms_thresh=None) == [1, 2, 3]
    assert select(1, nms_thresh=None) == [1]
    assert hard_example_ranking(LOSSES, BOXES, nms_thresh=None).tolist() == [1, 2, 3, 0, 4]


def test_nms_removes_a_hard_roi_overlapping_a_harder_one_and_the_next_hardest_comes_in():
    """NMS 0.7: B goes (IoU 0.818 with A), so the third place goes to E (0.4) after A and F."""
    assert hard_example_ranking(LOSSES, BOXES, nms_thresh=0.7).tolist() == [1, 3, 0, 4]
    assert select(3, nms_thresh=0.7) == [1, 3, 0]
    assert select(3) == [1, 3, 0]  # the paper's 0.7 is the default


@pytest.mark.parametrize(
    "thresh,expected",
    [
        (0.85, [1, 2, 3]),  # nothing overlaps by more than 0.85: as without NMS
        (0.8, [1, 3, 0]),  # B (0.818) goes; F's 0.739 with the removed B does not count
        (0.55, [1, 0, 4]),  # F (0.6 with A) goes too
        (1.0, [1, 2, 3]),  # no IoU exceeds 1
    ],
)
def test_the_threshold_decides_what_is_removed(thresh, expected):
    assert select(3, nms_thresh=thresh) == expected


def test_per_label_nms_suppresses_within_a_label_only():
    """The authors' code: B labelled apart from A and F is no longer removed by A; F (A's label) still
    overlaps A by 0.6 only. With one label for all, the class-agnostic result comes back."""
    labels = torch.tensor([0, 1, 2, 1, 0])
    assert select(3, groups=labels) == [1, 2, 3]
    assert select(3, groups=torch.zeros(5, dtype=torch.long)) == [1, 3, 0]
    # F in B's label: B survives, and F (0.739 > 0.7 with B) is now removed by it.
    assert select(5, groups=torch.tensor([0, 1, 2, 2, 0])) == [1, 2, 0, 4]


def test_fewer_rois_than_the_budget_are_all_kept():
    assert select(10, nms_thresh=None) == [1, 2, 3, 0, 4]
    assert select(10) == [1, 3, 0, 4]  # the NMS still removes B; the 4 left are all kept
    empty = select_hard_examples(torch.zeros(0), torch.zeros(0, 4), 8)
    assert empty.dtype == torch.long and empty.numel() == 0
    assert select(0) == []


def test_ties_go_to_the_lower_index():
    """Equal losses: the ranking is by index, and of two identical boxes of equal loss the lower index is
    kept, wherever the two stand."""
    disjoint = torch.tensor([[10.0 * i, 0, 10.0 * i + 5, 5] for i in range(5)])
    assert select_hard_examples(torch.full((5,), 0.5), disjoint, 3, nms_thresh=None).tolist() == [0, 1, 2]
    twins = disjoint.clone()
    twins[3] = twins[1]
    losses = torch.tensor([0.2, 0.5, 0.1, 0.5, 0.5])
    assert select_hard_examples(losses, twins, 5).tolist() == [1, 4, 0, 2]
    assert select_hard_examples(losses, twins, 5, nms_thresh=None).tolist() == [1, 3, 4, 0, 2]
    # The same ties once more, in a batch that puts them far into a long list: still deterministic.
    many = torch.cat([torch.rand(3000) * 0.1, losses])
    boxes = torch.cat([torch.tensor([[0.0, 100.0 + i, 5.0, 105.0 + i] for i in range(3000)]), twins])
    ranking = hard_example_ranking(many, boxes, nms_thresh=0.7)
    assert ranking[:3].tolist() == [3001, 3004, 3000]


def test_losses_with_gradient_are_read_without_it():
    losses = LOSSES.clone().requires_grad_()
    idx = select_hard_examples(losses, BOXES, 3)
    assert idx.tolist() == [1, 3, 0] and not idx.requires_grad


def test_mmdetection_positive_cap():
    """6 RoIs, disjoint: 3 positives (losses 0.9, 0.8, 0.7) and 3 negatives (0.2, 0.1, 0.05); 4 kept.
    Cap 0.25: int(4 * 0.25) = 1 positive, the hardest (index 0), and 3 negatives; cap 0.5: 2 and 2.
    No cap (the paper): the 4 hardest, 3 of them positives. Few positives: a 0.75 cap on 1 positive
    keeps it and fills with 3 negatives."""
    boxes = torch.tensor([[10.0 * i, 0, 10.0 * i + 5, 5] for i in range(6)])
    losses = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1, 0.05])
    positive = torch.tensor([True, True, True, False, False, False])
    assert select_hard_examples(losses, boxes, 4, positive=positive, positive_fraction=0.25).tolist() == [0, 3, 4, 5]
    assert select_hard_examples(losses, boxes, 4, positive=positive, positive_fraction=0.5).tolist() == [0, 1, 3, 4]
    assert select_hard_examples(losses, boxes, 4, positive=positive).tolist() == [0, 1, 2, 3]
    one = torch.tensor([False, False, True, False, False, False])
    assert select_hard_examples(losses, boxes, 4, positive=one, positive_fraction=0.75).tolist() == [0, 1, 2, 3]
    # Positives outnumber the negatives: the negatives cannot fill, min(#neg, 4 - 1) = 2 are all there is.
    many_pos = torch.tensor([True, True, True, True, False, False])
    assert take_hardest(torch.arange(6), 4, positive=many_pos, positive_fraction=0.25).tolist() == [0, 4, 5]


def test_statistics_and_scalars_by_hand():
    """Image 1: the crafted 5, NMS 0.7, 3 kept (A, F, E); A and B foreground. Losses: all 2.9, kept 1.8.
    Image 2: 2 RoIs of loss 0.1 and 0.3, one foreground (the second), both kept, no NMS.
    Batch: 7 RoIs, 6 left by the NMS, 5 kept; foreground 3 of 7, kept 2 of 5; mean losses 3.3/7, 2.2/5."""
    positive = torch.tensor([False, True, True, False, False])
    ranking = hard_example_ranking(LOSSES, BOXES, nms_thresh=0.7)
    one = selection_statistics(LOSSES, positive, ranking, take_hardest(ranking, 3))
    assert one.tolist() == pytest.approx([5, 4, 3, 2, 1, 2.9, 1.8, 1])
    losses2, positive2 = torch.tensor([0.1, 0.3]), torch.tensor([False, True])
    two = selection_statistics(losses2, positive2, torch.tensor([1, 0]), torch.tensor([1, 0]))
    scalars = ohem_scalars(one + two)
    assert scalars == pytest.approx(dict(
        num_candidates=3.5, num_selected=2.5, nms_removed=0.5, fg_fraction_candidates=3 / 7,
        mean_loss_candidates=3.3 / 7, fg_fraction_selected=2 / 5, mean_loss_selected=2.2 / 5))  # fmt: skip
    empty = selection_statistics(torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long),
                                 torch.zeros(0, dtype=torch.long))  # fmt: skip
    assert ohem_scalars(empty) == dict(num_candidates=0.0, num_selected=0.0, nms_removed=0.0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(batch_size_per_image=0), r"batch_size_per_image=0 must be an integer >= 1"),
        (dict(batch_size_per_image=64.0), r"batch_size_per_image=64.0 must be an integer"),
        (dict(selection_nms_thresh=0.0), r"selection_nms_thresh=0.0 must be in \(0, 1\].*or None"),
        (dict(selection_nms_thresh=70), r"selection_nms_thresh=70 must be in \(0, 1\]"),
        (dict(positive_fraction=0.0), r"positive_fraction=0.0 must be None .*or in \(0, 1\]"),
        (dict(positive_fraction=1.5), r"positive_fraction=1.5 must be None .*or in \(0, 1\]"),
        (dict(selection_loss="focal"), r"selection_loss='focal' is not one of \('cls_box', 'cls'\)"),
    ],
)
def test_bad_options_raise_naming_the_value(kwargs, message):
    options = dict(batch_size_per_image=512, selection_nms_thresh=0.7, positive_fraction=None, selection_loss="cls_box")
    check_ohem_options(**options)  # the paper's values pass
    for fraction in (0.25, 1.0):  # mmdetection's cap, and a cap that keeps every hard positive
        check_ohem_options(**{**options, "positive_fraction": fraction})
    with pytest.raises(ValueError, match=message):
        check_ohem_options(**{**options, **kwargs})


def test_hyperparameters_are_the_batch_and_the_nms_threshold():
    """The review's 2 (papers/001 Table 1): B/N and the NMS threshold; no foreground ratio."""
    names = [(h.name, h.default) for h in HYPERPARAMETERS]
    assert names == [("batch_size_per_image", 512), ("selection_nms_thresh", 0.7)]
    assert "§4.1" in HYPERPARAMETERS[0].meaning and "§4.1" in HYPERPARAMETERS[1].meaning


def test_selection_imports_without_detectron2():
    code = (
        "import sys; sys.modules['detectron2'] = None\n"
        "import ohem, ohem.selection\n"
        "assert not hasattr(ohem, 'OHEMROIHeads') and hasattr(ohem, 'select_hard_examples')\n"
        "try:\n"
        "    import ohem.roi_heads\n"
        "except ImportError as e:\n"
        "    print('MESSAGE', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MESSAGE ohem.roi_heads needs detectron2" in result.stdout
