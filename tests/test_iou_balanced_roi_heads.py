"""IoUBalancedROIHeads on crafted proposals, CPU, in seconds: the negatives' IoU-bin counts worked out by
hand and equal to the pure sampler's draw, the positives identical to StandardROIHeads', an image
without objects, every constructor argument changing the draw, bad arguments, EventStorage signals.

Every proposal is built to have a chosen IoU with its object: for a ground-truth box (x0, y0, x0 + 100,
y0 + 100), the proposal (x0, y0, x0 + 100 v, y0 + 100) lies inside it and has IoU exactly v; IoU 0 is a
box between the objects. The ground-truth boxes are appended to the proposals (detectron2's
proposal_append_gt) as positives of IoU 1. The matcher is Faster R-CNN's: background below IoU 0.5, so
the paper's bins are [0, 1/6), [1/6, 1/3), [1/3, 1/2).
"""
import pytest
import torch

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 2
SIZE = (320, 320)
OBJECT_A, OBJECT_B = (0.0, 0.0, 100.0, 100.0), (200.0, 200.0, 300.0, 300.0)
EMPTY = [110.0, 110.0, 190.0, 190.0]  # IoU 0 with both objects


def box(iou, gt=OBJECT_A):
    x0, y0, _, y1 = gt
    return EMPTY if iou == 0 else [x0, y0, x0 + 100.0 * iou, y1]


def image(objects, proposals):
    """objects: [(box, class)]; proposals: [(IoU, count, object box)]. Returns (proposals, targets)."""
    from detectron2.structures import Boxes, Instances

    boxes = [box(v, gt) for v, n, gt in proposals for _ in range(n)]
    props = Instances(SIZE)
    props.proposal_boxes = Boxes(torch.tensor(boxes))
    props.objectness_logits = torch.zeros(len(boxes))
    target = Instances(SIZE)
    target.gt_boxes = Boxes(torch.tensor([list(b) for b, _ in objects]).reshape(-1, 4))
    target.gt_classes = torch.tensor([c for _, c in objects], dtype=torch.long)
    return props, target


def image_1():
    """Objects A (class 0, 89 positives at IoU 0.7 + its own box = 90) and B (class 1, 2 at 0.8 + 1 = 3);
    negatives of A: 40 at IoU 0 and 20 at 0.1 (bin 0: 60), 30 at 0.25 (bin 1), 6 at 0.4 (bin 2: short).
    64 per image, 25 %: 16 positives, 48 negatives, 16 per bin: bin 2 gives its 6, the 10 missing come
    at random from bins 0 and 1 (so each ends with at least 16)."""
    return image([(OBJECT_A, 0), (OBJECT_B, 1)],
                 [(0.7, 89, OBJECT_A), (0.8, 2, OBJECT_B), (0.0, 40, OBJECT_A), (0.1, 20, OBJECT_A),
                  (0.25, 30, OBJECT_A), (0.4, 6, OBJECT_A)])  # fmt: skip


def image_2():
    """Object A (class 1, 3 positives + its box = 4); 40 negatives at each of IoU 0, 0.3 and 0.45, one
    bin each. 4 positives, 60 negatives: exactly 20 per bin."""
    return image([(OBJECT_A, 1)], [(0.7, 3, OBJECT_A), (0.0, 40, OBJECT_A), (0.3, 40, OBJECT_A), (0.45, 40, OBJECT_A)])


def batch(*images):
    return [p for p, _ in images], [t for _, t in images]


def heads(cls=None, **kwargs):
    """A small (untrained) ROI heads: one 8-channel level at stride 4, a 16-d fc head; 64 ROIs per image."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

    from iou_balanced import IoUBalancedROIHeads

    torch.manual_seed(0)
    args = dict(
        num_classes=NUM_CLASSES, batch_size_per_image=64, positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        box_in_features=["p2"],
        box_pooler=ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=FastRCNNOutputLayers(
            ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES),
    )  # fmt: skip
    return (cls or IoUBalancedROIHeads)(**{**args, **kwargs})


def sample(model, proposals, targets, seed=0):
    """label_and_sample_proposals inside an EventStorage, from torch seed ``seed``; (sampled, scalars)."""
    from detectron2.utils.events import EventStorage

    torch.manual_seed(seed)
    with EventStorage() as storage:
        sampled = model.label_and_sample_proposals(proposals, targets)
    return sampled, {k: v[0] for k, v in storage.latest().items()}


def sampled_ious(inst, target):
    """The highest IoU with the image's objects of each sampled proposal (0 without objects)."""
    from detectron2.structures import pairwise_iou

    if len(target) == 0:
        return torch.zeros(len(inst))
    return pairwise_iou(target.gt_boxes, inst.proposal_boxes).max(dim=0).values


def negatives(inst):
    return inst.gt_classes == NUM_CLASSES


def count(values, v):
    return int(((values - v).abs() < 1e-4).sum())


def paper_bins(ious):
    from iou_balanced import iou_bins

    return torch.bincount(iou_bins(ious, 3, 0.0, 0.5), minlength=3).tolist()


def test_negatives_are_iou_balanced_per_image_and_logged():
    """Image 1: 48 negatives, bin 2 all 6, bins 0 and 1 at least 16 each; image 2: 20 / 20 / 20.
    Logged over the batch: bin 2 holds (6 + 20) / 108 of the drawn negatives, against (6 + 40) / 216 of
    all negatives; detectron2's counts (16 + 4) / 2 = 10 and (48 + 60) / 2 = 54 per image."""
    proposals, targets = batch(image_1(), image_2())
    for seed in range(3):
        sampled, scalars = sample(heads(), proposals, targets, seed)
        b0, b1, b2 = paper_bins(sampled_ious(sampled[0], targets[0])[negatives(sampled[0])])
        assert b2 == 6 and b0 >= 16 and b1 >= 16 and b0 + b1 + b2 == 48
        assert paper_bins(sampled_ious(sampled[1], targets[1])[negatives(sampled[1])]) == [20, 20, 20]
        assert scalars["roi_head/num_fg_samples"] == 10 and scalars["roi_head/num_bg_samples"] == 54
        assert scalars["iou_balanced/bg_fraction_bin2"] == pytest.approx(26 / 108)
        assert scalars["iou_balanced/bg_fraction_bin0"] + scalars["iou_balanced/bg_fraction_bin1"] == pytest.approx(82 / 108)
        assert scalars["iou_balanced/candidate_fraction_bin0"] == pytest.approx(100 / 216)
        assert scalars["iou_balanced/candidate_fraction_bin1"] == pytest.approx(70 / 216)
        assert scalars["iou_balanced/candidate_fraction_bin2"] == pytest.approx(46 / 216)
        assert scalars["iou_balanced/bg_fraction_outside"] == 0.0
        assert scalars["iou_balanced/candidate_mean_iou"] == pytest.approx((20 * 0.1 + 30 * 0.25 + 6 * 0.4 + 40 * 0.3 + 40 * 0.45) / 216, abs=1e-5)


def test_the_heads_draw_what_the_sampler_draws():
    """Same torch seed: the heads' samples are the proposals subsample_labels_iou_balanced picks from the
    labels and IoUs computed here (ground truth appended, Faster R-CNN's matching), image after image."""
    from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
    from detectron2.structures import pairwise_iou

    from iou_balanced import subsample_labels_iou_balanced

    proposals, targets = batch(image_1(), image_2())
    for kwargs in ({}, dict(bin_range="max_iou", floor_thr=0.0, positive_sampling="instance_balanced")):
        model = heads(**kwargs)
        sampled, _ = sample(model, proposals, targets, seed=5)
        torch.manual_seed(5)
        for props, target, got in zip(add_ground_truth_to_proposals(targets, proposals), targets, sampled):
            quality = pairwise_iou(target.gt_boxes, props.proposal_boxes)
            ious, gt_index = quality.max(dim=0)
            labels = torch.where(ious >= 0.5, target.gt_classes[gt_index], torch.full_like(gt_index, NUM_CLASSES))
            pos, neg = subsample_labels_iou_balanced(
                labels, ious, 64, 0.25, NUM_CLASSES, num_bins=3, iou_high=None if kwargs else 0.5,
                floor_thr=kwargs.get("floor_thr"), positive_sampling=kwargs.get("positive_sampling", "random"),
                gt_index=gt_index)  # fmt: skip
            idx = torch.cat([pos, neg])
            assert torch.equal(got.proposal_boxes.tensor, props.proposal_boxes.tensor[idx])
            assert torch.equal(got.gt_classes, labels[idx])


def test_positives_are_those_of_standard_roi_heads():
    """Same seed: image 1 draws 16 of its 93 positives with the first random permutation, exactly as
    detectron2's subsample_labels does; image 2 takes all 4. Boxes, classes and matched objects agree."""
    from detectron2.modeling.roi_heads import StandardROIHeads

    proposals, targets = batch(image_1(), image_2())
    ours, ours_scalars = sample(heads(), proposals, targets, seed=3)
    theirs, theirs_scalars = sample(heads(StandardROIHeads), proposals, targets, seed=3)
    fa, fb = ours[0][~negatives(ours[0])], theirs[0][~negatives(theirs[0])]
    assert len(fa) == len(fb) == 16
    assert torch.equal(fa.proposal_boxes.tensor, fb.proposal_boxes.tensor)
    assert torch.equal(fa.gt_classes, fb.gt_classes) and torch.equal(fa.gt_boxes.tensor, fb.gt_boxes.tensor)

    def rows(inst):  # image 2: the same 4, each in the order of its own (differently advanced) generator
        return sorted(zip(inst.proposal_boxes.tensor.tolist(), inst.gt_classes.tolist(), inst.gt_boxes.tensor.tolist()))

    assert rows(ours[1][~negatives(ours[1])]) == rows(theirs[1][~negatives(theirs[1])])
    assert len(rows(ours[1][~negatives(ours[1])])) == 4
    assert [int(negatives(a).sum()) for a in ours] == [int(negatives(b).sum()) for b in theirs] == [48, 60]
    for key in ("roi_head/num_fg_samples", "roi_head/num_bg_samples"):
        assert ours_scalars[key] == theirs_scalars[key]
    # The negatives themselves differ: detectron2 draws bin 2 (6 of 96) about 3 times in 48, we draw all 6.
    assert paper_bins(sampled_ious(theirs[0], targets[0])[negatives(theirs[0])])[2] < 6


def test_an_image_without_objects_trains_on_negatives_only():
    """No ground truth: every proposal has IoU 0, 64 negatives are drawn (the bins' shares, then the
    refill), the losses are finite, and the box loss of the batch comes from the other image only."""
    from detectron2.structures import ImageList
    from detectron2.utils.events import EventStorage

    empty = image([], [(0.0, 100, OBJECT_A)])
    for bin_range in ("negatives", "max_iou"):
        model = heads(bin_range=bin_range)
        sampled, scalars = sample(model, *batch(empty))
        assert len(sampled[0]) == 64 and negatives(sampled[0]).all()
        assert scalars["iou_balanced/bg_mean_iou"] == 0.0 and scalars["roi_head/num_fg_samples"] == 0
        assert all(torch.isfinite(torch.tensor(v)) for v in scalars.values())

        proposals, targets = batch(empty, image_2())
        features = {"p2": torch.rand(2, 8, SIZE[0] // 4, SIZE[1] // 4)}
        images = ImageList(torch.zeros(2, 3, *SIZE), [SIZE, SIZE])
        model.train()
        with EventStorage():
            _, losses = model(images, features, proposals, targets)
        assert set(losses) == {"loss_cls", "loss_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box_reg"] > 0
        sum(losses.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_every_argument_reaches_the_sampling():
    """Image 2 (40 negatives at each of IoU 0, 0.3, 0.45; 60 drawn), by hand:
    - num_bins=2: bins [0, 0.25), [0.25, 0.5): 30 of the IoU-0 negatives (K = 3: 20);
    - num_bins=1: one bin, a random draw: 60 * 40 / 120 = 20 of IoU 0 on average, so not checked here;
    - floor_thr=0: the IoU-0 negatives are the floor; the 80 others cover the 60: none of IoU 0;
    - floor_thr=0.1, floor_fraction=0.5: int(60 * 0.5) = 30 binned, the floor gives the other 30;
    - bin_range="max_iou": bins [0, 1/3), [1/3, 2/3), [2/3, 1) (the appended box has IoU 1): 20 from
      the 80 below 1/3, 20 of IoU 0.45, 20 refilled at random - checked on image 3 below, where the
      difference from the paper's bins is certain.
    - positive_sampling: image 1, objects with 90 and 3 positives, 16 drawn: instance-balanced takes
      up to round(16 / 2) + 1 = 9 of each, 9 + 3, then 4 more from A: B keeps its 3 (a random draw
      does so with probability C(90, 13) / C(93, 16) = 0.004)."""
    proposals, targets = batch(image_2())

    def zeros_drawn(**kwargs):
        sampled, _ = sample(heads(**kwargs), proposals, targets)
        return count(sampled_ious(sampled[0], targets[0])[negatives(sampled[0])], 0.0)

    assert zeros_drawn() == 20
    assert zeros_drawn(num_bins=2) == 30
    assert zeros_drawn(floor_thr=0.0) == 0
    assert zeros_drawn(floor_thr=0.1, floor_fraction=0.5) == 30

    # Image 3: 200 negatives at IoU 0.05, 10 at 0.25, 50 at 0.45. The paper's bins draw 20 / 10 (all) / 20
    # and refill 10; the authors' interval pools 0.05 and 0.25 in one bin of 210, of which only 20 (+ some
    # of the refill) are drawn, so the 10 at 0.25 are no longer all taken.
    three = image([(OBJECT_A, 0)], [(0.7, 3, OBJECT_A), (0.05, 200, OBJECT_A), (0.25, 10, OBJECT_A), (0.45, 50, OBJECT_A)])
    proposals3, targets3 = batch(three)
    for bin_range, check in (("negatives", lambda n25, n45: n25 == 10 and n45 >= 20),
                             ("max_iou", lambda n25, n45: n25 < 10 and n45 >= 20)):  # fmt: skip
        sampled, _ = sample(heads(bin_range=bin_range), proposals3, targets3)
        ious = sampled_ious(sampled[0], targets3[0])[negatives(sampled[0])]
        assert len(ious) == 60 and check(count(ious, 0.25), count(ious, 0.45)), bin_range

    proposals1, targets1 = batch(image_1())
    for positive_sampling, b_count in (("instance_balanced", lambda n: n == 3), ("random", lambda n: n < 3)):
        sampled, _ = sample(heads(positive_sampling=positive_sampling), proposals1, targets1)
        fg = sampled[0][~negatives(sampled[0])]
        assert len(fg) == 16 and b_count(int((fg.gt_classes == 1).sum())), positive_sampling


def test_the_matcher_is_restored_and_the_threshold_read_from_it():
    from detectron2.modeling.matcher import Matcher

    model = heads()
    assert model.iou_high == 0.5 and heads(bin_range="max_iou").iou_high is None
    sample(model, *batch(image_2()))
    assert type(model.proposal_matcher) is Matcher
    ignore_band = heads(proposal_matcher=Matcher([0.3, 0.5], [0, -1, 1]))
    assert ignore_band.iou_high == 0.3


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_bins=0), r"num_bins=0 must be an integer >= 1"),
        (dict(bin_range="paper"), r"bin_range='paper' is not one of \('negatives', 'max_iou'\)"),
        (dict(floor_thr=-1), r"floor_thr=-1 .*is floor_thr=None here"),
        (dict(floor_thr=0.5), r"floor_thr=0.5 must be below the top of the binned interval \(0.5\)"),
        (dict(floor_thr=0.1, floor_fraction=2.0), r"floor_fraction=2.0 must be in \[0, 1\]"),
        (dict(floor_fraction=0.25), r"floor_fraction=0.25 takes a share .*set floor_thr"),
        (dict(positive_sampling="balanced"), r"positive_sampling='balanced' is not one of \('random', 'instance_balanced'\)"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        heads(**kwargs)


def test_a_matcher_without_a_background_ceiling_needs_the_authors_interval():
    from detectron2.modeling.matcher import Matcher

    everything_background = Matcher([0.5], [0, 0])
    with pytest.raises(ValueError, match=r"no background interval with a finite upper IoU.*bin_range='max_iou'"):
        heads(proposal_matcher=everything_background)
    assert heads(proposal_matcher=everything_background, bin_range="max_iou").iou_high is None
