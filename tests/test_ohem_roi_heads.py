"""OHEMROIHeads on crafted proposals, CPU, in seconds: the selection and the losses worked out by hand,
the losses equal to detectron2's FastRCNNOutputLayers on the RoIs an independent selection picks, the
gradient reaching the selected RoIs only, an image without objects, every constructor argument changing
the selection, bad arguments, inference identical to StandardROIHeads, and the training signals.

The controlled heads: the predictor's weights are zero, so every RoI gets the logits (2, 0, 1) (class 0,
class 1, background) and the deltas 0 whatever its features. With lse = log(e^2 + e^0 + e^1), a RoI's
classification loss is lse - 2 for class 0 and lse - 1 for background; its box loss (smooth L1 with
beta 0, i.e. L1, detectron2's default) is the L1 norm of its target deltas, weights (10, 10, 5, 5). For the
object A = (0, 0, 100, 100) of class 0 and a proposal (0, 0, 100, h): dy = 10 (50 - h/2) / h and
dh = 5 log(100 / h), dx = dw = 0.

The controlled image (the ground-truth box is appended last by detectron2):

    index  box                  IoU with A  label  loss
    0      P70 (0, 0, 100, 70)  0.70        0      lse - 2 + 10 * 15 / 70 + 5 log(100/70)    = 4.334
    1      P55 (0, 0, 100, 55)  0.55        0      lse - 2 + 10 * 22.5 / 55 + 5 log(100/55)  = 7.488
    2      P45 (0, 0, 100, 45)  0.45        bg     lse - 1                                   = 1.408
    3      Q1 (150, 150, 200, 200)  0       bg     1.408
    4      Q2 (250, 20, 300, 70)    0       bg     1.408
    5      A (0, 0, 100, 100)   1           0      lse - 2                                   = 0.408

By loss: 1, 0, 2, 3, 4 (ties by index), 5. IoU(P55, P70) = 55/70 = 0.786 and IoU(P55, P45) = 45/55 = 0.818,
so NMS at 0.7 removes P70 and P45: 1, 3, 4, 5 are left; 3 per image are kept: P55, Q1, Q2.
"""
import math

import pytest
import torch

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 2
SIZE = (320, 320)
OBJECT_A, OBJECT_B = (0.0, 0.0, 100.0, 100.0), (200.0, 200.0, 300.0, 300.0)
P70, P55, P45 = (0.0, 0.0, 100.0, 70.0), (0.0, 0.0, 100.0, 55.0), (0.0, 0.0, 100.0, 45.0)
Q1, Q2 = (150.0, 150.0, 200.0, 200.0), (250.0, 20.0, 300.0, 70.0)
LSE = math.log(math.exp(2) + 1 + math.exp(1))
CLS_A, CLS_BG = LSE - 2, LSE - 1


def box_l1(h):
    """L1 norm of the target deltas of (0, 0, 100, h) for A (see the module docstring)."""
    return 10 * (50 - h / 2) / h + 5 * math.log(100 / h)


LOSS = {P70: CLS_A + box_l1(70), P55: CLS_A + box_l1(55), P45: CLS_BG, Q1: CLS_BG, Q2: CLS_BG, OBJECT_A: CLS_A}


def image(objects, proposals):
    """objects: [(box, class)]; proposals: [box]. Returns (proposals, targets) Instances."""
    from detectron2.structures import Boxes, Instances

    props = Instances(SIZE)
    props.proposal_boxes = Boxes(torch.tensor([list(b) for b in proposals]).reshape(-1, 4))
    props.objectness_logits = torch.zeros(len(proposals))
    target = Instances(SIZE)
    target.gt_boxes = Boxes(torch.tensor([list(b) for b, _ in objects]).reshape(-1, 4))
    target.gt_classes = torch.tensor([c for _, c in objects], dtype=torch.long)
    return props, target


def controlled_image():
    return image([(OBJECT_A, 0)], [P70, P55, P45, Q1, Q2])


def batch(*images):
    return [p for p, _ in images], [t for _, t in images]


def heads(cls=None, controlled=False, predictor=None, **kwargs):
    """A small ROI heads: one 8-channel level at stride 4, a 16-d fc head; 3 RoIs kept per image.
    ``controlled``: the predictor's weights zeroed (logits (2, 0, 1), deltas 0); otherwise its weights are
    drawn with a large spread, so that the RoIs' losses differ clearly."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

    from ohem import OHEMROIHeads

    torch.manual_seed(0)
    args = dict(
        num_classes=NUM_CLASSES, batch_size_per_image=3,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        box_in_features=["p2"],
        box_pooler=ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=FastRCNNOutputLayers(
            ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
            num_classes=NUM_CLASSES, **(predictor or {})),
    )  # fmt: skip
    model = (cls or OHEMROIHeads)(**{**args, **kwargs})
    p = model.box_predictor
    with torch.no_grad():
        if controlled:
            p.cls_score.weight.zero_(), p.bbox_pred.weight.zero_(), p.bbox_pred.bias.zero_()
            p.cls_score.bias.copy_(torch.tensor([2.0, 0.0, 1.0]))
        else:
            p.cls_score.weight.normal_(std=1.0), p.bbox_pred.weight.normal_(std=0.3)
    return model.train()


def features(num_images, seed=1, requires_grad=False):
    torch.manual_seed(seed)
    return {"p2": torch.rand(num_images, 8, SIZE[0] // 4, SIZE[1] // 4, requires_grad=requires_grad)}


def images(num_images):
    from detectron2.structures import ImageList

    return ImageList(torch.zeros(num_images, 3, *SIZE), [SIZE] * num_images)


def train_step(model, proposals, targets, feats=None):
    """One training forward inside an EventStorage: (selected proposals, losses, scalars)."""
    from detectron2.utils.events import EventStorage

    feats = features(len(proposals)) if feats is None else feats
    with EventStorage() as storage:
        selected, losses = model(images(len(proposals)), feats, proposals, targets)
    return selected, losses, {k: v[0] for k, v in storage.latest().items()}


def boxes_of(inst):
    return [tuple(b) for b in inst.proposal_boxes.tensor.tolist()]


def test_selection_losses_and_signals_by_hand():
    """The controlled image: P55, Q1, Q2 kept (module docstring). loss_cls = (CLS_A + 2 CLS_BG) / 3 and
    loss_box_reg = |deltas of P55| / 3, normalised over the 3 kept RoIs as FastRCNNOutputLayers does.
    Signals: 6 candidates, 2 removed by the NMS, 3 kept; foreground 3 of 6 (P70, P55, A), 1 of 3 kept."""
    selected, losses, scalars = train_step(heads(controlled=True), *batch(controlled_image()))
    assert boxes_of(selected[0]) == [P55, Q1, Q2]
    assert selected[0].gt_classes.tolist() == [0, NUM_CLASSES, NUM_CLASSES]
    assert losses["loss_cls"].item() == pytest.approx((CLS_A + 2 * CLS_BG) / 3, rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(box_l1(55) / 3, rel=1e-5)
    assert scalars["ohem/num_candidates"] == 6 and scalars["ohem/nms_removed"] == 2
    assert scalars["ohem/num_selected"] == 3
    assert scalars["ohem/fg_fraction_candidates"] == pytest.approx(3 / 6)
    assert scalars["ohem/fg_fraction_selected"] == pytest.approx(1 / 3)
    assert scalars["ohem/mean_loss_selected"] == pytest.approx((LOSS[P55] + 2 * CLS_BG) / 3, rel=1e-5)
    assert scalars["ohem/mean_loss_candidates"] == pytest.approx(sum(LOSS.values()) / 6, rel=1e-5)
    # detectron2's counts are taken while labelling: every proposal here.
    assert scalars["roi_head/num_fg_samples"] == 3 and scalars["roi_head/num_bg_samples"] == 3


def two_images():
    """Image 1: A (class 0), B (class 1), 14 proposals of every kind, one of them twice. Image 2: B
    (class 1) and 6 proposals."""
    one = image([(OBJECT_A, 0), (OBJECT_B, 1)], [
        P70, P55, P45, (0, 0, 100, 30), (5, 5, 105, 105), (200, 200, 300, 260), (210, 200, 310, 300),
        (200, 200, 300, 240), (110, 110, 190, 190), (130, 20, 180, 70), (20, 200, 80, 280), (250, 20, 310, 90),
        P70, (30, 30, 90, 90)])  # fmt: skip
    two = image([(OBJECT_B, 1)], [(200, 200, 300, 250), (195, 205, 290, 300), (0, 0, 60, 60), (60, 60, 150, 150),
                                  (240, 240, 320, 320), (100, 220, 180, 300)])  # fmt: skip
    return batch(one, two)


def greedy_nms(boxes, losses, thresh):
    """Indices by descending loss (ties: lower index), each dropped if it overlaps a kept one by > thresh."""
    from detectron2.structures import Boxes, pairwise_iou

    iou = pairwise_iou(Boxes(boxes), Boxes(boxes))
    kept = []
    for i in sorted(range(len(losses)), key=lambda i: (-losses[i], i)):
        if all(iou[i, j] <= thresh for j in kept):
            kept.append(i)
    return kept


def test_readonly_pass_in_chunks_gives_the_losses_of_one_pass_over_all_rois(monkeypatch):
    """The readonly pass runs READONLY_CHUNK RoIs at a time per image: chunks of 1 and 5 (a boundary inside
    image 1's 16 RoIs) give the losses of one box-head forward over all RoIs of both images."""
    import ohem.roi_heads as ohem_heads
    from detectron2.utils.events import EventStorage

    model = heads()
    feats = features(2)
    with EventStorage():
        proposals = model.label_and_sample_proposals(*two_images())
    with torch.no_grad():
        pooled = model.box_pooler([feats["p2"]], [p.proposal_boxes for p in proposals])
        predictions = model.box_predictor(model.box_head(pooled))
    one_pass = ohem_heads.per_roi_losses(model.box_predictor, predictions, proposals)
    assert one_pass.numel() == sum(len(p) for p in proposals) == 16 + 7
    for chunk in (1, 5, ohem_heads.READONLY_CHUNK):
        monkeypatch.setattr(ohem_heads, "READONLY_CHUNK", chunk)
        torch.testing.assert_close(model.readonly_losses(feats, proposals), one_pass)


@pytest.mark.parametrize("budget", [3, 5])
def test_losses_are_fast_rcnn_losses_on_an_independent_selection(budget):
    """Random heads on two images. Independently of ohem.selection: each RoI's loss is
    FastRCNNOutputLayers.losses on that RoI alone (loss_cls + loss_box_reg for R = 1), a greedy NMS at 0.7
    written here picks the survivors, the hardest ``budget`` per image are kept; the heads keep the same
    RoIs, and their losses are FastRCNNOutputLayers.losses on exactly those RoIs."""
    from detectron2.utils.events import EventStorage

    model = heads(batch_size_per_image=budget)
    proposals, targets = two_images()
    feats = features(2)
    with EventStorage():
        labelled = model.label_and_sample_proposals(proposals, targets)
        with torch.no_grad():
            scores, deltas = model.box_predictor(model.box_head(model.box_pooler(
                [feats["p2"]], [p.proposal_boxes for p in labelled])))  # fmt: skip
        expected, start = [], 0
        for inst in labelled:
            own = []
            for i in range(len(inst)):
                j = start + i
                one = model.box_predictor.losses((scores[j : j + 1], deltas[j : j + 1]), [inst[i : i + 1]])
                own.append(float(one["loss_cls"] + one["loss_box_reg"]))
            start += len(inst)
            assert len(set(own)) > len(own) - 2, "the check needs clearly different losses"
            expected.append(inst[greedy_nms(inst.proposal_boxes.tensor, own, 0.7)[:budget]])
        with torch.no_grad():
            want = model.box_predictor.losses(model.box_predictor(model.box_head(model.box_pooler(
                [feats["p2"]], [p.proposal_boxes for p in expected]))), expected)  # fmt: skip

    selected, losses, _ = train_step(model, proposals, targets, feats)
    assert [len(s) for s in selected] == [budget, budget]
    for got, exp in zip(selected, expected):
        assert torch.equal(got.proposal_boxes.tensor, exp.proposal_boxes.tensor)
        assert torch.equal(got.gt_classes, exp.gt_classes)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    for key in losses:
        assert losses[key].item() == pytest.approx(want[key].item(), rel=1e-5), key
    assert losses["loss_box_reg"] > 0


@pytest.mark.parametrize(
    "predictor",
    [{}, dict(use_sigmoid_ce=True), dict(box_reg_loss_type="giou"), dict(cls_agnostic_bbox_reg=True),
     dict(smooth_l1_beta=0.5, loss_weight={"loss_cls": 2.0, "loss_box_reg": 0.5})],  # fmt: skip
)
def test_per_roi_losses_add_up_to_the_predictor_losses(predictor):
    """sum_i loss_i / R == loss_cls + loss_box_reg of FastRCNNOutputLayers, for each of its loss settings;
    classification only equals loss_cls."""
    from detectron2.utils.events import EventStorage

    from ohem import per_roi_losses

    model = heads(predictor=predictor)
    proposals, targets = two_images()
    with EventStorage():
        labelled = model.label_and_sample_proposals(proposals, targets)
        with torch.no_grad():
            predictions = model.box_predictor(model.box_head(model.box_pooler(
                [features(2)["p2"]], [p.proposal_boxes for p in labelled])))  # fmt: skip
            reference = model.box_predictor.losses(predictions, labelled)
    each = per_roi_losses(model.box_predictor, predictions, labelled)
    assert each.shape == (sum(len(p) for p in labelled),) and (each > 0).all()
    total = reference["loss_cls"] + reference["loss_box_reg"]
    assert each.sum().item() / len(each) == pytest.approx(total.item(), rel=1e-5)
    cls_only = per_roi_losses(model.box_predictor, predictions, labelled, with_box=False)
    assert cls_only.mean().item() == pytest.approx(reference["loss_cls"].item(), rel=1e-5)


def isolated_image(object_class):
    """One object at (8, 8, 72, 72) and 8 background proposals on a 3 x 3 grid of 112 px, each at least
    48 px (12 feature cells) from the others and from the object."""
    cells = [(x, y) for y in (8, 120, 232) for x in (8, 120, 232)][1:]
    return image([((8.0, 8.0, 72.0, 72.0), object_class)], [(x, y, x + 60.0, y + 64.0) for x, y in cells])


def test_gradients_reach_only_the_selected_rois():
    """Two images of 9 isolated RoIs (8 proposals and the object), 3 kept per image. The feature map's
    gradient is non-zero under each kept RoI and exactly zero under each of the 6 others; the box head
    runs with gradient on the 6 kept RoIs only (its other runs, the readonly pass, see all 18 without, 9
    per image)."""
    model = heads()
    calls = []
    model.box_head.register_forward_hook(lambda m, inp, out: calls.append((inp[0].shape[0], torch.is_grad_enabled())))
    feats = features(2, requires_grad=True)
    proposals, targets = batch(isolated_image(0), isolated_image(1))
    selected, losses, _ = train_step(model, proposals, targets, feats)
    sum(losses.values()).backward()
    assert calls == [(9, False), (9, False), (6, True)]
    grad = feats["p2"].grad.abs()
    for n, (props, target) in enumerate(zip(proposals, targets)):
        kept = set(boxes_of(selected[n]))
        assert len(kept) == 3
        every = boxes_of(props) + [tuple(target.gt_boxes.tensor[0].tolist())]
        for x0, y0, x1, y1 in every:
            rows = slice(max(int(y0 // 4) - 2, 0), int(y1 // 4) + 2)  # the RoI's cells and 2 around
            cols = slice(max(int(x0 // 4) - 2, 0), int(x1 // 4) + 2)
            region = grad[n, :, rows, cols]
            if (x0, y0, x1, y1) in kept:
                assert region.sum() > 0, (n, (x0, y0, x1, y1))
            else:
                assert region.sum() == 0, (n, (x0, y0, x1, y1))


def test_an_image_without_objects_trains_on_background_without_nan():
    """No ground truth: every proposal is background (no box loss); beside an image with objects the box
    loss comes from that one; alone, loss_box_reg is exactly 0 and loss_cls is CLS_BG for each kept RoI."""
    empty = image([], [P70, P55, Q1, Q2, (20, 200, 80, 280)])
    for proposals, targets in (batch(empty, controlled_image()), batch(empty)):
        model = heads()
        selected, losses, scalars = train_step(model, proposals, targets)
        assert len(selected[0]) == 3 and (selected[0].gt_classes == NUM_CLASSES).all()
        assert all(torch.isfinite(v) for v in losses.values())
        assert all(torch.isfinite(torch.tensor(v)) for v in scalars.values())
        sum(losses.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        if len(proposals) == 2:
            assert losses["loss_box_reg"] > 0
        else:
            assert losses["loss_box_reg"].item() == 0.0 and scalars["ohem/fg_fraction_selected"] == 0.0
    # Controlled weights, empty image alone: every RoI costs CLS_BG, so the ranking is by index, and P70
    # removes P55 (0.786); three background RoIs are kept, each CLS_BG.
    selected, losses, scalars = train_step(heads(controlled=True), *batch(empty))
    assert boxes_of(selected[0]) == [P70, Q1, Q2] and scalars["ohem/nms_removed"] == 1
    assert losses["loss_cls"].item() == pytest.approx(CLS_BG, rel=1e-6) and losses["loss_box_reg"].item() == 0.0


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({}, [P55, Q1, Q2]),  # the paper: NMS 0.7 over all RoIs, 3 hardest
        (dict(batch_size_per_image=2), [P55, Q1]),
        (dict(batch_size_per_image=10), [P55, Q1, Q2, OBJECT_A]),  # the 4 left by the NMS
        (dict(selection_nms_thresh=None), [P55, P70, P45]),  # no NMS: the 3 highest losses
        (dict(selection_nms_thresh=0.8), [P55, P70, Q1]),  # P70 (0.786) stays, P45 (0.818) goes
        (dict(selection_nms_per_label=True), [P55, P45, Q1]),  # background P45 no longer removed by P55
        # cls only: background (1.408) above class 0 (0.408); NMS: P45, Q1, Q2 first.
        (dict(selection_loss="cls"), [P45, Q1, Q2]),
        # mmdetection: no NMS, int(4 * 0.25) = 1 positive (P55), then the 3 hardest negatives.
        (dict(selection_nms_thresh=None, batch_size_per_image=4, positive_fraction=0.25), [P55, P45, Q1, Q2]),
        (dict(selection_nms_thresh=None, batch_size_per_image=4), [P55, P70, P45, Q1]),  # no cap: 2 positives
    ],
)
def test_every_argument_reaches_the_selection(kwargs, expected):
    """The controlled image (module docstring): each argument changes the kept RoIs as worked out there."""
    selected, _, _ = train_step(heads(controlled=True, **kwargs), *batch(controlled_image()))
    assert boxes_of(selected[0]) == expected


def test_all_rois_without_nms_train_as_standard_roi_heads_on_every_proposal():
    """A budget above the number of proposals, no NMS, no cap: OHEM trains on every proposal, which is what
    StandardROIHeads does with a batch that large and positive_fraction 1: the same losses."""
    from detectron2.modeling.roi_heads import StandardROIHeads

    proposals, targets = two_images()
    ohem = heads(batch_size_per_image=100, selection_nms_thresh=None)
    standard = heads(StandardROIHeads, batch_size_per_image=100, positive_fraction=1.0)
    standard.load_state_dict(ohem.state_dict())
    _, ours, _ = train_step(ohem, proposals, targets)
    _, theirs, _ = train_step(standard, proposals, targets)
    for key in theirs:
        assert ours[key].item() == pytest.approx(theirs[key].item(), rel=1e-6), key


def test_inference_is_standard_roi_heads_with_the_same_weights():
    from detectron2.modeling.roi_heads import StandardROIHeads

    ohem = heads().eval()
    standard = heads(StandardROIHeads, positive_fraction=0.25).eval()
    standard.load_state_dict(ohem.state_dict())
    proposals, _ = two_images()
    feats = features(2)
    with torch.no_grad():
        ours, _ = ohem(images(2), feats, proposals)
        theirs, _ = standard(images(2), feats, proposals)
    assert sum(len(x) for x in ours) > 0
    for a, b in zip(ours, theirs):
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)


def test_the_matcher_s_ignored_proposals_are_not_candidates():
    """An ignore band [0.4, 0.5): P45 is neither foreground nor background, so it is no candidate and never
    selected; the other 5 are all kept (no NMS, a budget of 10), hardest first."""
    from detectron2.modeling.matcher import Matcher

    model = heads(controlled=True, proposal_matcher=Matcher([0.4, 0.5], [0, -1, 1]), selection_nms_thresh=None,
                  batch_size_per_image=10)  # fmt: skip
    selected, _, scalars = train_step(model, *batch(controlled_image()))
    assert boxes_of(selected[0]) == [P55, P70, Q1, Q2, OBJECT_A] and scalars["ohem/num_candidates"] == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(batch_size_per_image=0), r"batch_size_per_image=0 must be an integer >= 1"),
        (dict(selection_nms_thresh=1.5), r"selection_nms_thresh=1.5 must be in \(0, 1\].*or None"),
        (dict(positive_fraction=0.0), r"positive_fraction=0.0 must be None \(no foreground ratio, the paper\)"),
        (dict(selection_loss="box"), r"selection_loss='box' is not one of \('cls_box', 'cls'\)"),
        (dict(selection_nms_per_label="yes"), r"selection_nms_per_label='yes' must be True .* or False"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        heads(**kwargs)


def test_declares_the_papers_hyper_parameters():
    from d2imbalance.analysis.hyperparameters import declared_hyperparameters

    from ohem import OHEMROIHeads

    assert [h.name for h in declared_hyperparameters(OHEMROIHeads)] == ["batch_size_per_image", "selection_nms_thresh"]
