"""ISRROIHeads / ISRFastRCNNOutputLayers / PISAROIHeads on a crafted two-image batch, CPU, in seconds.

The renormalisation keeps the value of loss_cls (Σ w' CE = Σ CE over the positives and over the
negatives), so the weights are read back from the gradient: for a softmax cross-entropy averaged over
R RoIs, d loss_cls / d logit[i, y_i] = w'_i (p_i,y_i - 1) / R.

Proposals are built with chosen IoUs: for a ground truth (x0, y0, x0 + 100, y0 + 100) the box
(x0, y0, x0 + 100 v, y0 + 100) lies inside it with IoU v; (x0 + 45, y0, x0 + 100, y0 + 100) has IoU 0.55.
The ground truth is not appended to the proposals (proposal_append_gt=False) unless a test says so, and
64 RoIs per image take every proposal, so the sampled set is known.

Image 1: objects A = (0, 0, 100, 100) and B = (200, 200, 300, 300), both class 0.
    positives: a.9 = (0, 0, 90, 100), a.8 = (0, 0, 80, 100), a.55 = (45, 0, 100, 100);
               b.85 = (200, 200, 285, 300), b.7 = (200, 200, 270, 300).
    Overlaps: IoU(a.9, a.8) = 0.89, IoU(a.9, a.55) = 4500 / 10000 = 0.45, IoU(a.8, a.55) = 0.35,
    IoU(b.85, b.7) = 0.82.
    negatives (IoU 0): n1 = (120, 0, 160, 40), n2 = (120, 0, 160, 36) (IoU 0.9 with n1), n3 = (0, 150, 40, 190).
Image 2: object C = (0, 0, 100, 100), class 1. positives c.95 = (0, 0, 95, 100), c.75 = (0, 0, 75, 100);
    negatives n4 = (150, 150, 190, 190), n5 = (120, 0, 160, 40), the box of image 1's n1.

ISR-P, per class. Class 0 without NMS among the positives: local ranks a.9 0, a.8 1, a.55 2, b.85 0, b.7 1;
HLR a.9 0, b.85 1, a.8 2, b.7 3, a.55 4. Class 1: c.95 0, c.75 1. n_max = 5, u = (5 - r) / 5:
    a.9 1, b.85 0.8, a.8 0.6, b.7 0.4, a.55 0.2, c.95 1, c.75 0.8.
With NMS at 0.5: a.9 suppresses a.8 (0.89) but not a.55 (0.45); b.85 suppresses b.7: A's local ranks become
a.9 0, a.55 1, a.8 2, and the HLR a.9 0, b.85 1, b.7 2, a.55 3, a.8 4:
    a.9 1, b.85 0.8, b.7 0.6, a.55 0.4, a.8 0.2, c.95 1, c.75 0.8.
ISR-N: the clusters are {n1, n2}, {n3}, {n4}, {n5} (clusters never span images; NMS at 0.5 on the
regressed boxes, which an untrained box head leaves within a pixel of the proposals); the ranks inside
{n1, n2} and across the clusters follow the (untrained, random) scores, so the test ranks them from the
scores it reads.
"""
import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 2
SIZE = (320, 320)
A, B = (0.0, 0.0, 100.0, 100.0), (200.0, 200.0, 300.0, 300.0)
IMAGE_1 = dict(
    objects=[(A, 0), (B, 0)],
    positives={0.9: [0, 0, 90, 100], 0.8: [0, 0, 80, 100], 0.55: [45, 0, 100, 100], 0.85: [200, 200, 285, 300],
               0.7: [200, 200, 270, 300]},
    negatives=[[120, 0, 160, 40], [120, 0, 160, 36], [0, 150, 40, 190]],
)  # fmt: skip
IMAGE_2 = dict(objects=[(A, 1)], positives={0.95: [0, 0, 95, 100], 0.75: [0, 0, 75, 100]},
               negatives=[[150, 150, 190, 190], [120, 0, 160, 40]])  # fmt: skip
EMPTY = dict(objects=[], positives={}, negatives=[[10, 10, 50, 50], [12, 10, 50, 50], [200, 200, 260, 260]])
U_PLAIN = {0.9: 1.0, 0.85: 0.8, 0.8: 0.6, 0.7: 0.4, 0.55: 0.2, 0.95: 1.0, 0.75: 0.8}
U_NMS = {0.9: 1.0, 0.85: 0.8, 0.7: 0.6, 0.55: 0.4, 0.8: 0.2, 0.95: 1.0, 0.75: 0.8}
OBJECT_OF = {0.9: 0, 0.8: 0, 0.55: 0, 0.85: 1, 0.7: 1, 0.95: 0, 0.75: 0}  # gt_index within the image


def image(spec):
    from detectron2.structures import Boxes, Instances

    boxes = list(spec["positives"].values()) + spec["negatives"]
    props = Instances(SIZE)
    props.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    props.objectness_logits = torch.zeros(len(boxes))
    target = Instances(SIZE)
    target.gt_boxes = Boxes(torch.tensor([list(b) for b, _ in spec["objects"]], dtype=torch.float32).reshape(-1, 4))
    target.gt_classes = torch.tensor([c for _, c in spec["objects"]], dtype=torch.long)
    return props, target


def batch(*specs):
    pairs = [image(s) for s in specs]
    return [p for p, _ in pairs], [t for _, t in pairs]


def features(n):
    return {"p2": torch.rand(n, 8, SIZE[0] // 4, SIZE[1] // 4, generator=torch.Generator().manual_seed(1))}


def heads(cls=None, predictor=None, **kwargs):
    """A small untrained ROI heads (one 8-channel level at stride 4, a 16-d fc head); 64 RoIs per image."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    from pisa import ISRFastRCNNOutputLayers, ISRROIHeads

    predictor = dict(predictor or {})
    predictor_cls = predictor.pop("cls", ISRFastRCNNOutputLayers)
    torch.manual_seed(0)
    args = dict(
        num_classes=NUM_CLASSES, batch_size_per_image=64, positive_fraction=0.25, proposal_append_gt=False,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False), box_in_features=["p2"],
        box_pooler=ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=predictor_cls(ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                    num_classes=NUM_CLASSES, **predictor),
    )  # fmt: skip
    return (cls or ISRROIHeads)(**{**args, **kwargs})


def run(model, specs, seed=0):
    """Sample, run the box branch as StandardROIHeads._forward_box does, and backpropagate the losses.

    Returns dict: sampled (per image), losses (floats), scalars (EventStorage), logits (R, K+1) with
    .grad from loss_cls alone, weights (R,) read from that gradient, ce (R,), labels (R,).
    """
    from detectron2.utils.events import EventStorage

    proposals, targets = batch(*specs)
    feats = features(len(specs))
    model.train()
    torch.manual_seed(seed)
    with EventStorage() as storage:
        if getattr(model, "negative_sampling", "random") == "score_hlr":
            model._features = feats  # what ISRROIHeads.forward keeps for the sampler
        sampled = model.label_and_sample_proposals(proposals, targets)
        model._features = None
        box = model.box_head(model.box_pooler([feats["p2"]], [s.proposal_boxes for s in sampled]))
        logits, deltas = model.box_predictor(box)
        logits.retain_grad()
        losses = model.box_predictor.losses((logits, deltas), sampled)
    losses["loss_cls"].backward(retain_graph=True)
    labels = torch.cat([s.gt_classes for s in sampled])
    rows = torch.arange(len(labels))
    p = F.softmax(logits.detach(), dim=1)[rows, labels]
    weights = logits.grad[rows, labels] * len(labels) / (p - 1)
    return dict(
        sampled=sampled, losses=losses, scalars={k: v[0] for k, v in storage.latest().items()}, logits=logits,
        deltas=deltas, weights=weights, ce=F.cross_entropy(logits.detach(), labels, reduction="none"), labels=labels,
    )  # fmt: skip


def expected_weights(out, u_table, gamma_p=2.0, beta_p=0.0, gamma_n=0.5, beta_n=0.0, clusters=None):
    """The weights worked out as the module docstring says: positives from ``u_table`` by their recorded
    IoU; negatives ranked from the scores read here (local rank in ``clusters``, then score)."""
    sampled, labels, ce, logits = out["sampled"], out["labels"], out["ce"], out["logits"].detach()
    ious = torch.cat([s.gt_iou for s in sampled])
    images = torch.cat([torch.full((len(s),), i) for i, s in enumerate(sampled)])
    fg = labels < NUM_CLASSES
    w = torch.ones(len(labels))
    u = torch.tensor([u_table[round(float(v), 2)] for v in ious[fg]])
    w[fg] = ((1 - beta_p) * u + beta_p) ** gamma_p
    w[fg] *= ce[fg].sum() / (w[fg] * ce[fg]).sum()
    # Negatives: clusters are given as lists of proposal boxes per image.
    neg = (~fg).nonzero().squeeze(1).tolist()
    score = F.softmax(logits, dim=1)[:, :-1].max(dim=1).values
    boxes = torch.cat([s.proposal_boxes.tensor for s in sampled])
    key = {}
    for i in neg:
        members = [j for j in neg if images[j] == images[i] and clusters(boxes[i].tolist(), boxes[j].tolist())]
        key[i] = (sorted(members, key=lambda j: -float(score[j])).index(i), -float(score[i]))
    order = sorted(neg, key=lambda i: key[i])
    for r, i in enumerate(order):
        w[i] = ((1 - beta_n) * (len(neg) - r) / len(neg) + beta_n) ** gamma_n
    w[neg] *= ce[neg].sum() / (w[neg] * ce[neg]).sum()
    return w


def same_cluster_at(threshold):
    from detectron2.structures import Boxes, pairwise_iou

    def same(a, b):
        return a == b or float(pairwise_iou(Boxes(torch.tensor([a])), Boxes(torch.tensor([b])))[0, 0]) > threshold

    return same


def test_matching_records_each_rois_iou_and_object():
    """The sampled RoIs carry their IoU with their ground truth (0 for the negatives here) and its index."""
    out = run(heads(), [IMAGE_1, IMAGE_2, EMPTY])
    for s, spec in zip(out["sampled"], (IMAGE_1, IMAGE_2, EMPTY)):
        fg = s.gt_classes < NUM_CLASSES
        assert sorted(round(float(v), 2) for v in s.gt_iou[fg]) == sorted(spec["positives"])
        assert (s.gt_iou[~fg] == 0).all() and int((~fg).sum()) == len(spec["negatives"])
        for iou, index in zip(s.gt_iou[fg].tolist(), s.gt_index[fg].tolist()):
            assert index == OBJECT_OF[round(iou, 2)]
    # With the ground truth appended, each object's own box is a positive of IoU 1.
    out = run(heads(proposal_append_gt=True), [IMAGE_1])
    fg = out["sampled"][0].gt_classes < NUM_CLASSES
    assert sorted(out["sampled"][0].gt_iou[fg].tolist())[-2:] == [1.0, 1.0]


@pytest.mark.parametrize("nms,table", [(0.5, U_NMS), (None, U_PLAIN)])
def test_classification_weights_by_hand(nms, table):
    """The weights read from the gradient are the hand-computed ones (module docstring), γ_P = 2, γ_N = 0.5;
    loss_cls is Σ w' CE / R, equal to the unweighted mean."""
    out = run(heads(predictor=dict(positive_nms_threshold=nms)), [IMAGE_1, IMAGE_2])
    expected = expected_weights(out, table, clusters=same_cluster_at(0.5))
    assert torch.allclose(out["weights"], expected, rtol=1e-4, atol=1e-5)
    assert out["losses"]["loss_cls"].item() == pytest.approx(float((expected * out["ce"]).mean()), rel=1e-5)
    assert out["losses"]["loss_cls"].item() == pytest.approx(float(out["ce"].mean()), rel=1e-5)
    # The top positive of each object outweighs the bottom one, and the signals say so.
    s = out["scalars"]
    assert s["isr/pos_weight_top"] > s["isr/pos_weight_bottom"] and s["isr/neg_weight_top"] > s["isr/neg_weight_bottom"]
    assert s["isr/pos_iou_mean"] == pytest.approx(sum(U_PLAIN) / 7, abs=1e-5)
    assert s["isr/neg_cluster_fraction"] == pytest.approx(4 / 5)
    for key in ("pos_weight_mean", "pos_weight_std", "neg_weight_mean", "neg_weight_std", "pos_renorm", "neg_renorm"):
        assert math.isfinite(s[f"isr/{key}"])


def test_the_full_forward_trains_on_the_same_losses():
    """ROIHeads.forward in training gives the losses of the step-by-step path above (same seed)."""
    from detectron2.structures import ImageList
    from detectron2.utils.events import EventStorage

    model = heads(predictor=dict(carl=True))
    step = run(model, [IMAGE_1, IMAGE_2])
    proposals, targets = batch(IMAGE_1, IMAGE_2)
    torch.manual_seed(0)
    with EventStorage():
        _, losses = model(ImageList(torch.zeros(2, 3, *SIZE), [SIZE, SIZE]), features(2), proposals, targets)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_carl"}
    for k, v in losses.items():
        assert v.item() == pytest.approx(step["losses"][k].item(), rel=1e-6), k


def test_carl_in_the_heads_by_hand():
    """loss_carl = Σ c_i L_i / R over the 7 positives, s_i the softmax probability of the gt class,
    L_i the L1 distance (smooth_l1_beta = 0) of the predicted deltas to the targets, c = 2 normalised
    (0.2 + 0.8 s). The gradient reaches the class logits unless carl_detach_score=True."""
    model = heads(predictor=dict(carl=True))
    out = run(model, [IMAGE_1, IMAGE_2])
    sampled, labels, logits, deltas = out["sampled"], out["labels"], out["logits"], out["deltas"]
    fg = (labels < NUM_CLASSES).nonzero().squeeze(1)
    s = F.softmax(logits.detach(), dim=1)[fg, labels[fg]]
    boxes = torch.cat([x.proposal_boxes.tensor for x in sampled])
    gts = torch.cat([x.gt_boxes.tensor for x in sampled])
    target = model.box_predictor.box2box_transform.get_deltas(boxes[fg], gts[fg])
    pred = deltas.detach().view(-1, NUM_CLASSES, 4)[fg, labels[fg]]
    reg = (pred - target).abs().sum(dim=1)
    v = 0.2 + 0.8 * s
    c = v * len(fg) / v.sum()
    assert out["losses"]["loss_carl"].item() == pytest.approx(float((c * reg).sum() / len(labels)), rel=1e-5)
    logits.grad = None
    out["losses"]["loss_carl"].backward()
    assert logits.grad[fg].abs().sum() > 0 and logits.grad[labels == NUM_CLASSES].abs().sum() == 0
    detached = run(heads(predictor=dict(carl=True, carl_detach_score=True)), [IMAGE_1, IMAGE_2])
    assert detached["losses"]["loss_carl"].item() == pytest.approx(out["losses"]["loss_carl"].item(), rel=1e-6)
    detached["logits"].grad = None
    detached["losses"]["loss_carl"].backward()
    assert detached["logits"].grad is None or detached["logits"].grad.abs().sum() == 0


def test_an_image_without_objects():
    """With an image of objects: finite losses and gradients, its negatives ranked among the batch's.
    Alone: no positive, box loss and CARL exactly 0, no NaN anywhere, no positive signal logged."""
    from detectron2.structures import ImageList
    from detectron2.utils.events import EventStorage

    for specs in ([EMPTY, IMAGE_2], [EMPTY]):
        model = heads(predictor=dict(carl=True))
        proposals, targets = batch(*specs)
        with EventStorage() as storage:
            _, losses = model(ImageList(torch.zeros(len(specs), 3, *SIZE), [SIZE] * len(specs)), features(len(specs)),
                              proposals, targets)  # fmt: skip
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        scalars = storage.latest()
        assert all(math.isfinite(v[0]) for v in scalars.values())
        assert "isr/neg_weight_mean" in scalars
        if len(specs) == 1:
            assert losses["loss_box_reg"].item() == 0.0 and losses["loss_carl"].item() == 0.0
            assert not any(k.startswith("isr/pos") for k in scalars)
    out = run(heads(), [EMPTY, IMAGE_2])
    assert torch.isfinite(out["weights"]).all() and (out["sampled"][0].gt_iou == 0).all()


def _changed(out, base, key="weights", rows=None):
    a, b = out[key], base[key]
    if rows is not None:
        a, b = a[rows], b[rows]
    return not torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "predictor,part",
    [
        (dict(positive_gamma=1.0), "pos"),
        (dict(positive_beta=0.5), "pos"),
        (dict(negative_gamma=2.0), "neg"),
        (dict(negative_beta=0.5), "neg"),
        (dict(positive_nms_threshold=0.5), "pos"),
        (dict(negative_nms_threshold=0.95), "neg"),
        (dict(positive_iou="regressed"), "pos"),
    ],
)
def test_every_isr_argument_reaches_the_gradient(predictor, part):
    """Each argument changes the weights of its part and only those.

    For positive_iou="regressed" the box head is made to widen every box 1.5 times (dw = 5 ln 1.5), which
    reorders A's positives by the regressed IoU: a.8 -> 0.83, a.9 -> 0.74, a.55 -> 0.60.
    For negative_nms_threshold=0.95 every score is made equal (zero classifier), so ties keep the sampled
    order: at 0.5, n2 is second in the cluster of n1 and ranks last of the 5 negatives; at 0.95 every
    negative is its own cluster, and n2 ranks before image 2's n4 and n5, which come after it."""
    base = heads()
    model = heads(predictor=predictor)
    for m in (base, model):
        with torch.no_grad():
            if "positive_iou" in predictor:
                m.box_predictor.bbox_pred.bias.view(NUM_CLASSES, 4)[:, 2] = 5 * math.log(1.5)
            if "negative_nms_threshold" in predictor:
                m.box_predictor.cls_score.weight.zero_()
                m.box_predictor.cls_score.bias.zero_()
    out, ref = run(model, [IMAGE_1, IMAGE_2]), run(base, [IMAGE_1, IMAGE_2])
    fg = ref["labels"] < NUM_CLASSES
    assert torch.equal(out["labels"], ref["labels"])
    assert _changed(out, ref, rows=fg if part == "pos" else ~fg)
    assert not _changed(out, ref, rows=~fg if part == "pos" else fg)
    assert out["losses"]["loss_cls"].item() == pytest.approx(ref["losses"]["loss_cls"].item(), rel=1e-5)
    if "positive_iou" in predictor:
        assert out["scalars"]["isr/pos_iou_mean"] != pytest.approx(ref["scalars"]["isr/pos_iou_mean"], abs=1e-3)


@pytest.mark.parametrize("predictor", [dict(carl_k=2.0), dict(carl_bias=0.5)])
def test_every_carl_argument_reaches_the_loss(predictor):
    ref = run(heads(predictor=dict(carl=True)), [IMAGE_1, IMAGE_2])
    out = run(heads(predictor=dict(carl=True, **predictor)), [IMAGE_1, IMAGE_2])
    assert out["losses"]["loss_carl"].item() != pytest.approx(ref["losses"]["loss_carl"].item(), rel=1e-6)
    assert "loss_carl" not in run(heads(), [IMAGE_1, IMAGE_2])["losses"]


MANY = dict(objects=[(A, 0)], positives={0.9: [0, 0, 90, 100], 0.8: [0, 0, 80, 100]},
            negatives=[[x, y, x + 40, y + 40] for x in (120.0, 180.0, 240.0) for y in (0.0, 60.0, 120.0, 180.0, 240.0)]
            + [[120.0, 0.0, 160.0, 38.0], [180.0, 60.0, 220.0, 98.0]])  # fmt: skip


def test_score_hlr_sampling_draws_the_top_ranked_negatives():
    """negative_sampling="score_hlr", 8 RoIs per image: 2 positives (25 %) and 6 of the 17 negatives, the 6
    first by Score-HLR of the box head's own predictions on all 17 (the two near-duplicates fall into the
    clusters of their neighbours), weighted u = (17 - r) / 17, γ = 0.5, rescaled. Compared with what the
    test computes from the same forward pass through pisa.score_hlr_sample, and with the random draw."""
    from detectron2.structures import Boxes

    from pisa import score_hlr_sample

    model = heads(negative_sampling="score_hlr", batch_size_per_image=8, negative_score_threshold=0.0)
    out = run(model, [MANY])
    sampled = out["sampled"][0]
    neg = sampled.gt_classes == NUM_CLASSES
    assert int((~neg).sum()) == 2 and int(neg.sum()) == 6
    boxes = torch.tensor(MANY["negatives"])
    feats = features(1)
    with torch.no_grad():
        logits, deltas = model.box_predictor(model.box_head(model.box_pooler([feats["p2"]], [Boxes(boxes)])))
        best, regressed = model.box_predictor.foreground_scores_and_boxes(logits, deltas, boxes)
        ce = F.cross_entropy(logits, torch.full((len(boxes),), NUM_CLASSES), reduction="none")
    idx, w = score_hlr_sample(best, regressed, ce, 6, gamma=0.5, beta=0.0, score_threshold=0.0)
    assert sampled.proposal_boxes.tensor[neg].tolist() == boxes[idx].tolist()
    assert torch.allclose(sampled.isr_negative_weight[neg], w)
    assert torch.allclose(out["weights"][neg], w, rtol=1e-4, atol=1e-5)  # the loss uses the sampler's weights
    assert out["scalars"]["isr/neg_valid_fraction"] == 1.0
    # The positives are detectron2's draw: the same first permutation of the two.
    assert (sampled.gt_iou[~neg] > 0.5).all()
    # With a threshold no score passes, the negatives are drawn at random and weighted 1.
    out = run(heads(negative_sampling="score_hlr", batch_size_per_image=8, negative_score_threshold=0.99), [MANY])
    neg = out["sampled"][0].gt_classes == NUM_CLASSES
    assert torch.equal(out["sampled"][0].isr_negative_weight[neg], torch.ones(6))
    assert out["scalars"]["isr/neg_valid_fraction"] == 0.0


def test_score_hlr_sampling_through_the_forward_and_on_an_empty_image():
    from detectron2.structures import ImageList
    from detectron2.utils.events import EventStorage

    model = heads(negative_sampling="score_hlr", batch_size_per_image=8)
    proposals, targets = batch(MANY, EMPTY)
    with EventStorage() as storage:
        _, losses = model(ImageList(torch.zeros(2, 3, *SIZE), [SIZE, SIZE]), features(2), proposals, targets)
    assert all(torch.isfinite(v) for v in losses.values()) and model._features is None
    assert "isr/neg_valid_fraction" in storage.latest()


def test_without_isr_the_losses_and_gradients_are_detectron2s():
    """γ_P = γ_N = 0: every weight 1, so loss_cls, loss_box_reg and every gradient equal those of
    StandardROIHeads with FastRCNNOutputLayers and the same parameters."""
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers, StandardROIHeads

    ours = heads(predictor=dict(positive_gamma=0.0, negative_gamma=0.0))
    theirs = heads(StandardROIHeads, predictor=dict(cls=FastRCNNOutputLayers))
    theirs.load_state_dict(ours.state_dict())
    a, b = run(ours, [IMAGE_1, IMAGE_2]), run(theirs, [IMAGE_1, IMAGE_2])
    assert torch.allclose(a["weights"], torch.ones(len(a["labels"])), atol=1e-5)
    for key in ("loss_cls", "loss_box_reg"):
        assert a["losses"][key].item() == pytest.approx(b["losses"][key].item(), rel=1e-6)
    for m in (ours, theirs):
        m.zero_grad()
    sum(a["losses"].values()).backward()
    sum(b["losses"].values()).backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7), name


def test_inference_is_standard_roi_heads():
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers, StandardROIHeads

    ours = heads(predictor=dict(carl=True), negative_sampling="score_hlr")
    theirs = heads(StandardROIHeads, predictor=dict(cls=FastRCNNOutputLayers))
    theirs.load_state_dict(ours.state_dict())
    proposals, _ = batch(IMAGE_1, IMAGE_2)
    for m in (ours, theirs):
        m.eval()
        m.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        a, _ = ours(None, features(2), proposals)
        b, _ = theirs(None, features(2), proposals)
    for x, y in zip(a, b):
        assert len(x) > 0
        assert torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor) and torch.equal(x.scores, y.scores)
        assert torch.equal(x.pred_classes, y.pred_classes)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(predictor=dict(positive_gamma=-2.0)), r"positive_gamma=-2.0 must be a number >= 0"),
        (dict(predictor=dict(negative_beta=2)), r"negative_beta=2 must be in \[0, 1\]"),
        (dict(predictor=dict(positive_iou="pred")), r"positive_iou='pred' is not one of \('proposal', 'regressed'\)"),
        (dict(predictor=dict(positive_nms_threshold=-0.5)), r"positive_nms_threshold=-0.5 must be an IoU in \(0, 1\]"),
        (dict(predictor=dict(negative_nms_threshold=0)), r"negative_nms_threshold=0 must be an IoU in \(0, 1\]"),
        (dict(predictor=dict(carl_k=-1.0)), r"carl_k=-1.0 must be a number >= 0"),
        (dict(predictor=dict(carl_bias=1.2)), r"carl_bias=1.2 must be in \[0, 1\]"),
        (dict(predictor=dict(carl=True, box_reg_loss_type="giou")), r"box_reg_loss_type='giou' is not supported"),
        (dict(predictor=dict(use_sigmoid_ce=True)), r"use_sigmoid_ce=True, use_fed_loss=False: .*set use_sigmoid_ce=False"),
        (dict(negative_sampling="ohem"), r"negative_sampling='ohem' is not one of \('random', 'score_hlr'\)"),
        (dict(negative_score_threshold=1.0), r"negative_score_threshold=1.0 must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        heads(**kwargs)


def test_the_heads_and_the_predictor_need_each_other():
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers, StandardROIHeads

    from pisa import ISRROIHeads, PISAROIHeads

    with pytest.raises(ValueError, match=r"box_predictor is a FastRCNNOutputLayers.*box_predictor._target_"):
        heads(predictor=dict(cls=FastRCNNOutputLayers))
    with pytest.raises(ValueError, match=r"needs the fields gt_iou and gt_index .*ISRROIHeads"):
        run(heads(StandardROIHeads), [IMAGE_2])
    with pytest.raises(ValueError, match=r"PISAROIHeads is ISR \+ CARL, but box_predictor.carl=False"):
        heads(PISAROIHeads)
    assert heads(PISAROIHeads, predictor=dict(carl=True)).box_predictor.carl
    assert [h.name for h in PISAROIHeads.HYPERPARAMETERS][-2:] == ["box_predictor.carl_k", "box_predictor.carl_bias"]
    assert len(ISRROIHeads.HYPERPARAMETERS) == 6 and len(PISAROIHeads.HYPERPARAMETERS) == 8


def test_carl_under_isr_heads_warns_about_the_declaration(caplog):
    with caplog.at_level("WARNING"):
        heads(predictor=dict(carl=True))
    assert "use pisa.PISAROIHeads for ISR + CARL" in caplog.text
