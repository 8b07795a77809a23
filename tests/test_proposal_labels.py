"""d2imbalance.modeling.proposal_labels: the ROI heads' proposal labels and the no-sampling rule, by hand
(pure torch: runs without detectron2)."""
import torch

from d2imbalance.modeling.proposal_labels import label_all_proposals, proposal_class_labels

NUM_CLASSES = 3  # label 3 is the background


def _case():
    # Five proposals matched to ground truths 1, 0, 1, 0, 1 (of classes 2 and 0): the first is
    # foreground, the second background, the third ignored, the fourth foreground, the fifth background.
    matched_idxs = torch.tensor([1, 0, 1, 0, 1])
    matched_labels = torch.tensor([1, 0, -1, 1, 0])
    gt_classes = torch.tensor([2, 0])
    return matched_idxs, matched_labels, gt_classes


def test_labels_are_the_matched_class_background_or_ignored():
    labels = proposal_class_labels(*_case(), NUM_CLASSES)
    assert labels.tolist() == [0, 3, -1, 2, 3]


def test_the_matched_indices_are_not_modified():
    matched_idxs, matched_labels, gt_classes = _case()
    proposal_class_labels(matched_idxs, matched_labels, gt_classes, NUM_CLASSES)
    assert matched_idxs.tolist() == [1, 0, 1, 0, 1]
    assert gt_classes.tolist() == [2, 0]


def test_every_proposal_but_the_ignored_is_kept_in_order():
    keep, labels = label_all_proposals(*_case(), NUM_CLASSES)
    assert keep.tolist() == [0, 1, 3, 4]
    assert labels.tolist() == [0, 3, 2, 3]


def test_an_image_without_objects_labels_every_proposal_background():
    matched_idxs = torch.zeros(4, dtype=torch.long)
    matched_labels = torch.tensor([0, 0, -1, 0])  # detectron2's matcher without ground truth: all 0
    keep, labels = label_all_proposals(matched_idxs, matched_labels, torch.zeros(0, dtype=torch.long), NUM_CLASSES)
    assert keep.tolist() == [0, 1, 2, 3]
    assert labels.tolist() == [3, 3, 3, 3]
