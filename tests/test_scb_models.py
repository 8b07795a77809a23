"""RetinaNet-SCB, ScaleBalancedRPN and the optional SCB ROI heads on tiny CPU models."""
import glob
import math
import os

import pytest
import torch
from torch.nn import functional as F

pytestmark = pytest.mark.detectron2

K = 3  # classes of the tiny models


@pytest.fixture(scope="module")
def d2():
    from d2imbalance._compat import ensure_pkg_resources

    ensure_pkg_resources()
    import detectron2.modeling

    return detectron2.modeling


class _TinyBackbone(torch.nn.Module):
    """Two levels, 8 channels, strides 8 and 16."""

    def __init__(self):
        super().__init__()
        self.c3 = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.c4 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)

    @property
    def size_divisibility(self):
        return 16

    @property
    def padding_constraints(self):
        return {}

    def forward(self, x):
        p3 = torch.relu(self.c3(x))
        return {"p3": p3, "p4": torch.relu(self.c4(p3))}

    def output_shape(self):
        from detectron2.layers import ShapeSpec

        return {"p3": ShapeSpec(channels=8, stride=8), "p4": ShapeSpec(channels=8, stride=16)}


def tiny_retinanet(cls=None, **kwargs):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import RetinaNet
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

    torch.manual_seed(0)
    cls = cls or RetinaNet
    return cls(
        backbone=_TinyBackbone(),
        head=RetinaNetHead(input_shape=[ShapeSpec(channels=8)] * 2, num_classes=K, num_anchors=9, conv_dims=[8]),
        head_in_features=["p3", "p4"],
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[16, 20, 25], [32, 40, 50]], aspect_ratios=[0.5, 1.0, 2.0], strides=[8, 16]
        ),
        box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        num_classes=K,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        **kwargs,
    )


def tiny_rcnn(rpn_kwargs=None, scb_roi=False, roi_kwargs=None):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import GeneralizedRCNN, StandardROIHeads
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.proposal_generator.rpn import RPN, StandardRPNHead
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

    from scale_balanced import ScaleBalancedFastRCNNOutputLayers, ScaleBalancedROIHeads, ScaleBalancedRPN

    torch.manual_seed(0)
    rpn_cls = RPN if rpn_kwargs is None else ScaleBalancedRPN
    rpn_args = dict(batch_size_per_image=64, positive_fraction=0.5)
    rpn_args.update(rpn_kwargs or {})
    rpn = rpn_cls(
        in_features=["p3", "p4"],
        head=StandardRPNHead(in_channels=8, num_anchors=3),
        anchor_generator=DefaultAnchorGenerator(sizes=[[24], [48]], aspect_ratios=[0.5, 1.0, 2.0], strides=[8, 16]),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)),
        pre_nms_topk=(200, 100),
        post_nms_topk=(50, 30),
        **rpn_args,
    )
    predictor_cls = ScaleBalancedFastRCNNOutputLayers if scb_roi else FastRCNNOutputLayers
    heads_cls = ScaleBalancedROIHeads if scb_roi else StandardROIHeads
    roi_args = dict(batch_size_per_image=32, positive_fraction=0.25)
    roi_args.update(roi_kwargs or {})
    roi = heads_cls(
        box_in_features=["p3", "p4"],
        box_pooler=ROIPooler(output_size=7, scales=(1 / 8, 1 / 16), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=predictor_cls(
            ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=K
        ),
        num_classes=K,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        **roi_args,
    )
    return GeneralizedRCNN(
        backbone=_TinyBackbone(), proposal_generator=rpn, roi_heads=roi,
        pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0],
    )


def batch(empty_second=False):
    """Two random ~200x250 images: 3 objects of mixed size, then 2 (or none)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    boxes = [
        [[10.0, 12.0, 30.0, 30.0], [50.0, 40.0, 120.0, 110.0], [90.0, 60.0, 230.0, 190.0]],
        [] if empty_second else [[20.0, 20.0, 44.0, 50.0], [100.0, 30.0, 190.0, 150.0]],
    ]
    out = []
    for i, (h, w) in enumerate([(200, 250), (208, 240)]):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes[i]).reshape(-1, 4))
        inst.gt_classes = torch.arange(len(boxes[i])) % K
        out.append({"image": torch.rand(3, h, w, generator=g) * 255, "instances": inst, "height": h, "width": w})
    return out


def train_losses(model, inputs, seed=0):
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage(0) as storage:
        torch.manual_seed(seed)  # RPN / ROI subsampling
        losses = model(inputs)
    return losses, storage


def test_constant_form_reproduces_retinanet_exactly(d2):
    from scale_balanced import RetinaNetSCB

    vanilla, _ = train_losses(tiny_retinanet(), batch())
    for extra in ({}, {"normalize_by": "weight_sum"}):
        scb, _ = train_losses(tiny_retinanet(RetinaNetSCB, weighting_form="const", **extra), batch())
        for k in vanilla:
            assert torch.equal(vanilla[k], scb[k]), (k, extra, vanilla[k], scb[k])
    # The re-implemented weighted box loss matches detectron2's to float precision.
    scb, _ = train_losses(tiny_retinanet(RetinaNetSCB, weighting_form="const", weight_box_loss=True), batch())
    assert torch.equal(vanilla["loss_cls"], scb["loss_cls"])
    torch.testing.assert_close(vanilla["loss_box_reg"], scb["loss_box_reg"], rtol=1e-6, atol=1e-7)
    # The model's box loss type reaches both box-loss paths (GIoU here).
    giou, _ = train_losses(tiny_retinanet(box_reg_loss_type="giou"), batch())
    assert not torch.allclose(giou["loss_box_reg"], vanilla["loss_box_reg"])
    for weight_box_loss in (False, True):
        scb, _ = train_losses(tiny_retinanet(RetinaNetSCB, weighting_form="const", box_reg_loss_type="giou",
                                             weight_box_loss=weight_box_loss), batch())
        torch.testing.assert_close(giou["loss_box_reg"], scb["loss_box_reg"], rtol=1e-6, atol=1e-7)


def test_constant_form_reproduces_rpn_exactly(d2):
    vanilla, _ = train_losses(tiny_rcnn(), batch())
    for extra in ({}, {"count_sampled": True}):
        scb, _ = train_losses(tiny_rcnn(rpn_kwargs={"weighting_form": "const", **extra}), batch())
        for k in vanilla:
            assert torch.equal(vanilla[k], scb[k]), (k, vanilla[k], scb[k])
    scb, _ = train_losses(tiny_rcnn(rpn_kwargs={"weighting_form": "const", "weight_box_loss": True}), batch())
    torch.testing.assert_close(vanilla["loss_rpn_loc"], scb["loss_rpn_loc"], rtol=1e-6, atol=1e-7)
    # The SCB ROI heads with the constant form give the same losses up to summation order.
    scb, _ = train_losses(
        tiny_rcnn(scb_roi=True, roi_kwargs={"weighting_form": "const"}), batch()
    )
    for k in vanilla:
        torch.testing.assert_close(vanilla[k], scb[k], rtol=1e-6, atol=1e-7)


def test_weighted_cls_loss_follows_eq2(d2):
    """One object, M positive anchors. With the loss sum L = N + P (N: negatives' focal loss, P:
    positives'), the forms give const: N + P, inv: N + βP/M, scale_balanced: N + W·P. Solving the
    first two for P predicts the third (all normalised by the same positive-count EMA)."""
    from scale_balanced import RetinaNetSCB
    from scale_balanced.matching import record_matches

    inputs = batch()[:1]
    from detectron2.structures import Boxes

    # A 40x40 box centred on a stride-16 anchor centre: the 32, 40 and 50 px square anchors all match.
    inputs[0]["instances"] = inputs[0]["instances"][1:2]
    inputs[0]["instances"].gt_boxes = Boxes(torch.tensor([[44.0, 44.0, 84.0, 84.0]]))
    model = tiny_retinanet(RetinaNetSCB)
    with record_matches(model) as matches:
        train_losses(model, inputs)
    m = int((matches[0][1] == 1).sum())
    assert m > 1
    cls = {f: train_losses(tiny_retinanet(RetinaNetSCB, weighting_form=f), inputs)[0]["loss_cls"].item()
           for f in ("const", "inv", "scale_balanced")}
    p = (cls["const"] - cls["inv"]) / (1 - 3 / m)
    w = 3 * (math.log(m) + 1) / m
    assert cls["scale_balanced"] == pytest.approx(cls["const"] + (w - 1) * p, rel=1e-4)


def test_forced_low_quality_match_and_ties_with_detectron2_matcher(d2):
    """detectron2's Matcher: GT1's best IoU (0.35, tied on anchors 3 and 4) is below 0.4, so both are
    forced positive and M1 = 2; GT2's best anchor (0) belongs to GT0 by argmax, so GT2 ends with M = 0."""
    from detectron2.modeling.matcher import Matcher

    from scale_balanced import scale_balanced_weights

    iou = torch.tensor([
        [0.7, 0.6, 0.1, 0.0, 0.0],
        [0.0, 0.0, 0.2, 0.35, 0.35],
        [0.3, 0.0, 0.0, 0.0, 0.0],
    ])
    matched, labels = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)(iou)
    res = scale_balanced_weights(matched, labels, 3)
    assert matched.tolist() == [0, 0, 1, 1, 1] and labels.tolist() == [1, 1, 0, 1, 1]
    assert res.counts.tolist() == [2, 2, 0]
    w2 = 3 * (math.log(2) + 1) / 2
    assert res.anchor_weights.tolist() == pytest.approx([w2, w2, 1.0, w2, w2])


@pytest.mark.parametrize("kind", ["retinanet", "rcnn", "rcnn_roi"])
def test_training_step_and_inference(d2, kind, monkeypatch):
    from detectron2.modeling.meta_arch import retinanet as retinanet_module
    from detectron2.modeling.proposal_generator import rpn as rpn_module
    from detectron2.structures import pairwise_iou

    from scale_balanced import RetinaNetSCB

    calls = []

    def counting_iou(a, b):
        calls.append((len(a), len(b)))
        return pairwise_iou(a, b)

    monkeypatch.setattr(retinanet_module, "pairwise_iou", counting_iou)
    monkeypatch.setattr(rpn_module, "pairwise_iou", counting_iou)
    if kind == "retinanet":
        model, prefix = tiny_retinanet(RetinaNetSCB, weight_box_loss=True), "scb/"
    else:
        model, prefix = tiny_rcnn(rpn_kwargs={}, scb_roi=kind == "rcnn_roi"), "scb_rpn/"
    for empty in (False, True):
        calls.clear()
        losses, storage = train_losses(model, batch(empty_second=empty))
        assert len(calls) == 2, f"one IoU matrix per image, got {calls}"  # no second matching
        total = sum(losses.values())
        assert torch.isfinite(total) and all(v.item() > 0 for v in losses.values()), losses
        total.backward()
        scalars = storage.latest()
        for size in ("small", "medium", "large"):
            assert f"{prefix}mean_M_{size}" in scalars and f"{prefix}mean_weight_{size}" in scalars
        if kind == "rcnn_roi":
            assert "scb_roi/mean_M_small" in scalars
    model.eval()
    with torch.no_grad():
        out = model([{k: v for k, v in x.items() if k != "instances"} for x in batch()])
    assert len(out) == 2 and all(o["instances"].pred_boxes.tensor.shape[1] == 4 for o in out)


def test_invalid_arguments_raise(d2):
    from scale_balanced import RetinaNetSCB

    with pytest.raises(ValueError, match="weighting_form"):
        tiny_retinanet(RetinaNetSCB, weighting_form="focal")
    with pytest.raises(ValueError, match="normalize_by"):
        tiny_retinanet(RetinaNetSCB, normalize_by="batch")



# ---------------------------------------------------------------------------------------------------
# Independent reference: the matching, weights and losses re-derived from their definitions (detectron2's
# Matcher semantics, Eq. 3 and Table 1, the focal / BCE / smooth-L1 formulas, detectron2's EMA), with no
# detectron2 matcher, no fvcore loss and no scale_balanced code. Model losses must equal these values.
# ---------------------------------------------------------------------------------------------------


def ref_iou(a, b):
    """(G, R) IoU of XYXY boxes, float32 as detectron2 computes it (so equal IoUs tie as they do there)."""
    wh = (torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh.prod(2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return torch.where(inter > 0, inter / (area_a[:, None] + area_b - inter), torch.zeros(1))


def ref_match(iou, low, high):
    """Matcher([low, high], [0, -1, 1], allow_low_quality_matches=True): argmax owner per anchor;
    label 1 at IoU >= high, 0 below low, -1 between; each ground truth's best anchors (ties included)
    are made positive and keep their argmax owner."""
    best, owner = iou.max(dim=0)
    labels = torch.full_like(owner, -1)
    labels[best < low] = 0
    labels[best >= high] = 1
    for g in range(len(iou)):
        labels[iou[g] == iou[g].max()] = 1
    return owner, labels


def ref_weight(m, form="scale_balanced", alpha=1.0, beta=3.0):
    """W of an object with m >= 1 positive anchors (Eq. 3 and Table 1, natural log)."""
    return {
        "scale_balanced": beta * (math.log(m) + alpha) / m,
        "const": 1.0,
        "inv_log": beta / (math.log(m) + 1.0),
        "inv_sqrt": beta / math.sqrt(m),
        "inv": beta / m,
        "log_over_m": beta * (math.log(m) + 1.0) / m,
        "log_over_m_unscaled": (math.log(m) + 1.0) / m,
    }[form]


def ref_anchor_weights(owner, labels, count_labels, num_gt, **form):
    """W of the owner on label-1 anchors, 1 on label-0, 0 on ignored; M counted on ``count_labels``."""
    counts = [int(((owner == g) & (count_labels == 1)).sum()) for g in range(num_gt)]
    w = torch.zeros(len(owner), dtype=torch.float64)
    w[labels == 0] = 1.0
    for a in torch.nonzero(labels == 1).flatten().tolist():
        w[a] = ref_weight(counts[owner[a]], **form)
    return w, counts


def ref_deltas(anchors, gt):
    """Box2BoxTransform(weights=(1, 1, 1, 1)).get_deltas, written out."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], dim=1)


def ref_smooth_l1(x, beta):
    x = x.abs()
    return torch.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta) if beta > 0 else x


def ref_focal(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    pos = -alpha * (1 - p) ** gamma * F.logsigmoid(logits)
    neg = -(1 - alpha) * p**gamma * F.logsigmoid(-logits)
    return torch.where(targets == 1, pos, neg)


def ref_bce(logits, targets):
    return -(targets * F.logsigmoid(logits) + (1 - targets) * F.logsigmoid(-logits))


class _Spy:
    """Replaces ``owner.<name>`` by a wrapper that keeps the positional arguments of each call."""

    def __init__(self, owner, name):
        self.calls, self.fn = [], getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return self.fn(*args, **kwargs)


def retinanet_reference(inputs, anchors, logits, deltas, *, form="scale_balanced", alpha=1.0, beta=3.0,
                        weight_box_loss=False, normalize_by="num_pos", smooth_l1_beta=0.1, steps_before=(),
                        focal=(0.25, 2.0)):
    """RetinaNet-SCB's loss_cls and loss_box_reg from the definitions, plus "num_pos" and "w_pos" (ΣW of
    the positives) of the step. ``steps_before``: (num_pos, w_pos) of earlier training steps, for
    detectron2's EMA normaliser (starts at 100, momentum 0.9, each value at least 1)."""
    logits, deltas = logits.double(), deltas.double()
    cls_sum, box_sum, box_sum_w, num_pos, w_pos = 0.0, 0.0, 0.0, 0, 0.0
    for n, x in enumerate(inputs):
        gt = x["instances"].gt_boxes.tensor
        targets = torch.zeros(len(anchors), K, dtype=torch.float64)
        w = torch.ones(len(anchors), dtype=torch.float64)
        if len(gt):
            owner, labels = ref_match(ref_iou(gt, anchors), 0.4, 0.5)
            w, _ = ref_anchor_weights(owner, labels, labels, len(gt), form=form, alpha=alpha, beta=beta)
            pos = labels == 1
            targets[pos, x["instances"].gt_classes[owner[pos]]] = 1.0
            per_box = ref_smooth_l1(deltas[n, pos] - ref_deltas(anchors[pos], gt[owner[pos]]).double(),
                                    smooth_l1_beta).sum(1)
            box_sum += float(per_box.sum())
            box_sum_w += float((per_box * w[pos]).sum())
            num_pos += int(pos.sum())
            w_pos += float(w[pos].sum())
        cls_sum += float((ref_focal(logits[n], targets, *focal).sum(1) * w).sum())

    def ema(values):
        v = 100.0
        for x in values:
            v = 0.9 * v + 0.1 * max(x, 1.0)
        return v

    count_norm = ema([p for p, _ in steps_before] + [num_pos])
    w_norm = ema([s for _, s in steps_before] + [w_pos]) if normalize_by == "weight_sum" else count_norm
    box = box_sum_w / w_norm if weight_box_loss else box_sum / count_norm
    return {"loss_cls": cls_sum / w_norm, "loss_box_reg": box, "num_pos": num_pos, "w_pos": w_pos}


def _retinanet_step(model, inputs):
    spy = _Spy(model, "losses")
    losses, storage = train_losses(model, inputs)
    anchors_, logits, _, deltas, _, _ = spy.calls[-1]
    from detectron2.layers import cat
    from detectron2.structures import Boxes

    return losses, storage, Boxes.cat(anchors_).tensor, cat(logits, dim=1).detach(), cat(deltas, dim=1).detach()


SCB_SWITCHES = [
    {},
    {"weighting_form": "const"},
    {"weighting_form": "inv_log"},
    {"weighting_form": "inv_sqrt"},
    {"weighting_form": "inv"},
    {"weighting_form": "log_over_m"},
    {"weighting_form": "log_over_m_unscaled"},
    {"weighting_form": "inv", "scb_beta": 1.5},
    {"scb_alpha": 2.0, "scb_beta": 1.5},
    {"weight_box_loss": True},
    {"normalize_by": "weight_sum"},
    {"normalize_by": "weight_sum", "weight_box_loss": True},
]


def _ref_kwargs(switches):
    return dict(form=switches.get("weighting_form", "scale_balanced"), alpha=switches.get("scb_alpha", 1.0),
                beta=switches.get("scb_beta", 3.0), weight_box_loss=switches.get("weight_box_loss", False),
                normalize_by=switches.get("normalize_by", "num_pos"))


@pytest.mark.parametrize("switches", SCB_SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_retinanet_scb_losses_equal_independent_computation(d2, switches):
    """Two training steps of the tiny RetinaNet-SCB (seeded; 2 images, 5 objects matched by 1 to 12
    anchors): loss_cls and loss_box_reg equal the reference computed from the definitions, for every
    switch. The second step checks that the EMA normalisers carry over (positive count and, for
    weight_sum, ΣW); the unweighted box loss keeps the positive-count EMA under weight_sum."""
    from scale_balanced import RetinaNetSCB

    model = tiny_retinanet(RetinaNetSCB, smooth_l1_beta=0.1, **switches)
    inputs = batch()
    history = []
    for step in range(2):
        losses, storage, anchors, logits, deltas = _retinanet_step(model, inputs)
        ref = retinanet_reference(inputs, anchors, logits, deltas, steps_before=history, **_ref_kwargs(switches))
        for k in ("loss_cls", "loss_box_reg"):
            assert losses[k].item() == pytest.approx(ref[k], rel=1e-5), (step, k, losses[k].item(), ref[k])
        history.append((ref["num_pos"], ref["w_pos"]))
    assert storage.latest()["scb/mean_pos_anchor_weight"][0] == pytest.approx(ref["w_pos"] / ref["num_pos"], rel=1e-5)


def test_retinanet_scb_focal_parameters_reach_the_loss(d2):
    """The model's focal α and γ (0.5 and 1 here) are the ones the weighted focal loss uses."""
    from scale_balanced import RetinaNetSCB

    model = tiny_retinanet(RetinaNetSCB, smooth_l1_beta=0.1, focal_loss_alpha=0.5, focal_loss_gamma=1.0)
    inputs = batch()
    losses, _, anchors, logits, deltas = _retinanet_step(model, inputs)
    ref = retinanet_reference(inputs, anchors, logits, deltas, focal=(0.5, 1.0))
    assert losses["loss_cls"].item() == pytest.approx(ref["loss_cls"], rel=1e-5)


def test_retinanet_scb_from_yacs_config(d2):
    """yacs configs: MODEL.SCB keys map to the keyword arguments (ALPHA -> scb_alpha, ...); keys that
    are absent, or the whole node, leave the defaults."""
    from detectron2.config import CfgNode, get_cfg

    from scale_balanced import RetinaNetSCB

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "RetinaNetSCB"
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    keys = ("weighting_form", "scb_alpha", "scb_beta", "weight_box_loss", "normalize_by")
    assert not set(keys) & set(RetinaNetSCB.from_config(cfg))
    cfg.MODEL.SCB = CfgNode({"WEIGHTING_FORM": "inv", "ALPHA": 2.0, "BETA": 1.5, "WEIGHT_BOX_LOSS": True,
                             "NORMALIZE_BY": "weight_sum"})
    kwargs = RetinaNetSCB.from_config(cfg)
    assert {k: kwargs[k] for k in keys} == {"weighting_form": "inv", "scb_alpha": 2.0, "scb_beta": 1.5,
                                            "weight_box_loss": True, "normalize_by": "weight_sum"}
    cfg.MODEL.SCB = CfgNode({"BETA": 2.0})
    kwargs = RetinaNetSCB.from_config(cfg)
    assert kwargs["scb_beta"] == 2.0 and not {"weighting_form", "scb_alpha", "normalize_by"} & set(kwargs)
    model = RetinaNetSCB(**kwargs)
    assert (model.scb_alpha, model.scb_beta, model.weighting_form) == (1.0, 2.0, "scale_balanced")


def test_rpn_all_anchors_ignored_gives_zero_not_nan(d2):
    """A batch whose anchors are all ignored (label -1, weight 0): ΣW = 0, the weight_sum normaliser
    stays 1, and both losses are exactly 0. Then one positive, anchor 0 = [-8, -8, 16, 16] (offset 0.5) against a box
    shifted by 6 px in x: the partial loss_weight dict scales only loss_rpn_cls (x 2); loss_rpn_loc keeps
    detectron2's default weight 1: L1 |dx| = 6/24 = 0.25 over RPN's num_sampled = 64 anchors."""
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.structures import Boxes
    from detectron2.utils.events import EventStorage

    model = tiny_rcnn(rpn_kwargs={"normalize_by": "weight_sum", "loss_weight": {"loss_rpn_cls": 2.0}})
    rpn = model.proposal_generator
    anchors = DefaultAnchorGenerator(sizes=[[24]], aspect_ratios=[[1.0]], strides=[8])(
        [torch.zeros(1, 1, 2, 2)])
    r = len(anchors[0])
    with EventStorage():
        rpn._scb_weights = torch.zeros(1, r)
        losses = rpn.losses(anchors, [torch.ones(1, r)], [torch.full((r,), -1)], [torch.zeros(1, r, 4)],
                            [torch.zeros(r, 4)])
        assert {k: v.item() for k, v in losses.items()} == {"loss_rpn_cls": 0.0, "loss_rpn_loc": 0.0}
        rpn._scb_weights = torch.ones(1, r)
        labels = torch.zeros(r, dtype=torch.int64)
        labels[0] = 1
        assert anchors[0].tensor[0].tolist() == [-8.0, -8.0, 16.0, 16.0]
        gt = torch.tensor([[-2.0, -8.0, 22.0, 16.0]]).expand(r, 4)
        losses = rpn.losses(anchors, [torch.zeros(1, r)], [labels], [torch.zeros(1, r, 4)], [gt])
    # r anchors with logit 0: BCE ln 2 each whatever the label, ΣW = r, times the loss weight 2
    assert losses["loss_rpn_cls"].item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert losses["loss_rpn_loc"].item() == pytest.approx(0.25 / 64, rel=1e-6)
    assert isinstance(anchors[0], Boxes)


def test_reference_case_spreads_match_counts(d2):
    """The case above is informative: M differs between objects, so every weighting form differs from
    the constant one, and weight_sum differs from num_pos."""
    from scale_balanced import RetinaNetSCB

    _, _, anchors, _, _ = _retinanet_step(tiny_retinanet(RetinaNetSCB), batch())
    counts = []
    for x in batch():
        owner, labels = ref_match(ref_iou(x["instances"].gt_boxes.tensor, anchors), 0.4, 0.5)
        counts += ref_anchor_weights(owner, labels, labels, len(x["instances"]))[1]
    assert min(counts) >= 1 and len(set(counts)) >= 3, counts


@pytest.mark.parametrize("normalize_by", ["num_pos", "weight_sum"])
def test_retinanet_scb_batch_without_objects(d2, normalize_by):
    """No object in the batch: no positive, so the normaliser's value is max(0, 1) = 1 and the EMA
    gives 0.9·100 + 0.1·1 = 90.1; loss_cls is the negatives' focal loss over it, loss_box_reg is 0,
    and no mean positive weight is logged."""
    from scale_balanced import RetinaNetSCB

    inputs = batch(empty_second=True)
    inputs[0]["instances"] = inputs[0]["instances"][:0]
    losses, storage, anchors, logits, deltas = _retinanet_step(
        tiny_retinanet(RetinaNetSCB, normalize_by=normalize_by), inputs
    )
    focal_sum = float(ref_focal(logits.double(), torch.zeros_like(logits, dtype=torch.float64)).sum())
    assert losses["loss_cls"].item() == pytest.approx(focal_sum / 90.1, rel=1e-5)
    assert losses["loss_box_reg"].item() == 0.0
    assert "scb/mean_pos_anchor_weight" not in storage.latest()


def rpn_reference(inputs, anchors, logits, deltas, sampled, *, form="scale_balanced", alpha=1.0, beta=3.0,
                  weight_box_loss=False, normalize_by="num_sampled", count_sampled=False, batch_size_per_image=8):
    """ScaleBalancedRPN's losses from the definitions, given the labels RPN's random subsampling kept
    (``sampled``: N tensors (R,)). Also returns the per-object M counted both ways."""
    logits, deltas = logits.double(), deltas.double()
    cls_sum, w_sum, box_sum, box_sum_w, counts = 0.0, 0.0, 0.0, 0.0, {"matcher": [], "sampled": []}
    for n, x in enumerate(inputs):
        gt, lab = x["instances"].gt_boxes.tensor, sampled[n]
        owner, matcher_labels = ref_match(ref_iou(gt, anchors), 0.3, 0.7)
        assert torch.all(matcher_labels[lab == 1] == 1), "subsampling only drops positives"
        w, m = ref_anchor_weights(owner, lab, lab if count_sampled else matcher_labels, len(gt),
                                  form=form, alpha=alpha, beta=beta)
        counts["matcher"] += ref_anchor_weights(owner, lab, matcher_labels, len(gt))[1]
        counts["sampled"] += ref_anchor_weights(owner, lab, lab, len(gt))[1]
        valid, pos = lab >= 0, lab == 1
        cls_sum += float((ref_bce(logits[n, valid], lab[valid].double()) * w[valid]).sum())
        w_sum += float(w[valid].sum())
        per_box = ref_smooth_l1(deltas[n, pos] - ref_deltas(anchors[pos], gt[owner[pos]]).double(), 0.0).sum(1)
        box_sum += float(per_box.sum())
        box_sum_w += float((per_box * w[pos]).sum())
    num_sampled = batch_size_per_image * len(inputs)
    norm = max(w_sum, 1.0) if normalize_by == "weight_sum" else num_sampled
    loc = box_sum_w / norm if weight_box_loss else box_sum / num_sampled
    return {"loss_rpn_cls": cls_sum / norm, "loss_rpn_loc": loc}, counts


RPN_SWITCHES = [
    {},
    {"count_sampled": True},
    {"weighting_form": "inv"},
    {"scb_alpha": 2.0, "scb_beta": 1.5},
    {"weight_box_loss": True},
    {"normalize_by": "weight_sum"},
    {"normalize_by": "weight_sum", "weight_box_loss": True},
]


@pytest.mark.parametrize("switches", RPN_SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_rpn_scb_losses_equal_independent_computation(d2, switches):
    """Tiny FasterRCNN-SCB, 8 anchors sampled per image with at most 2 positives, so subsampling drops
    positives: the RPN losses equal the reference for every switch. M is counted on the matcher's labels
    before subsampling unless count_sampled (the case makes the two counts differ)."""
    from detectron2.layers import cat
    from detectron2.structures import Boxes

    model = tiny_rcnn(rpn_kwargs={"batch_size_per_image": 8, "positive_fraction": 0.25, **switches})
    spy = _Spy(model.proposal_generator, "losses")
    inputs = batch()
    losses, _ = train_losses(model, inputs)
    anchors, logits, sampled, deltas, _ = spy.calls[-1]
    anchors = Boxes.cat(anchors).tensor
    ref, counts = rpn_reference(
        inputs, anchors, cat(logits, dim=1).detach(), cat(deltas, dim=1).detach(), sampled,
        **{k: v for k, v in _ref_kwargs(switches).items() if k != "normalize_by"},
        normalize_by=switches.get("normalize_by", "num_sampled"),
        count_sampled=switches.get("count_sampled", False),
    )
    assert counts["matcher"] != counts["sampled"], counts
    for k in ("loss_rpn_cls", "loss_rpn_loc"):
        assert losses[k].item() == pytest.approx(ref[k], rel=1e-5), (k, losses[k].item(), ref[k])


A_BOX, B_BOX = [0.0, 0.0, 100.0, 100.0], [150.0, 150.0, 170.0, 170.0]


def roi_case():
    """One 200x200 image, ground truths A (100x100, class 0) and B (20x20, class 1). Proposals: 5 with
    IoU >= 0.5 with A (shifted by 2-4 px), 1 with B (shifted by 1 px) and 4 background boxes (IoU 0).
    With the appended ground-truth boxes the matcher makes 6 proposals foreground for A and 2 for B."""
    from detectron2.structures import Boxes, Instances

    props = Instances((200, 200))
    props.proposal_boxes = Boxes(torch.tensor([
        [2, 0, 102, 100], [0, 2, 100, 102], [4, 0, 104, 100], [0, 4, 100, 104], [3, 3, 103, 103],
        [151, 150, 171, 170], [0, 150, 20, 170], [20, 150, 40, 170], [150, 0, 170, 20], [150, 20, 170, 40],
    ], dtype=torch.float32))
    props.objectness_logits = torch.zeros(10)
    targets = Instances((200, 200))
    targets.gt_boxes = Boxes(torch.tensor([A_BOX, B_BOX]))
    targets.gt_classes = torch.tensor([0, 1])
    return [props], [targets]


@pytest.mark.parametrize("count_sampled", [None, False, True])
@pytest.mark.parametrize("form", [{}, {"weighting_form": "inv"}, {"scb_alpha": 2.0, "scb_beta": 1.5}])
def test_roi_heads_weights_on_crafted_proposals(d2, count_sampled, form):
    """4 proposals sampled per image, at most 2 foreground. Each sampled foreground proposal gets W(M)
    of its ground truth: M = 6 for A and 2 for B from the matcher (also by default: count_sampled None
    = not passed), or, with count_sampled, the number of sampled foreground proposals of that ground
    truth; sampled background gets 1. Checked for every sampling draw of several seeds."""
    from detectron2.utils.events import EventStorage

    sampled = {} if count_sampled is None else {"count_sampled": count_sampled}
    model = tiny_rcnn(scb_roi=True, roi_kwargs={"batch_size_per_image": 4, "positive_fraction": 0.5,
                                                **sampled, **form})
    ref_form = {k: v for k, v in _ref_kwargs(form).items() if k in ("form", "alpha", "beta")}
    for seed in range(3):
        torch.manual_seed(seed)
        with EventStorage():
            (out,) = model.roi_heads.label_and_sample_proposals(*roi_case())
        fg = out.gt_classes < K
        assert int(fg.sum()) == 2 and len(out) == 4
        owner = [A_BOX if b == A_BOX else B_BOX for b in out.gt_boxes.tensor.tolist()]
        expected = []
        for i in range(len(out)):
            if not fg[i]:
                expected.append(1.0)
                continue
            m = sum(1 for j in range(len(out)) if fg[j] and owner[j] == owner[i]) if count_sampled else (
                6 if owner[i] == A_BOX else 2)
            expected.append(ref_weight(m, **ref_form))
        assert out.scb_weights.tolist() == pytest.approx(expected, rel=1e-6), (seed, owner, out.gt_classes)


def fast_rcnn_reference(scores, deltas, proposals, gt_boxes, gt_classes, weights, weight_box_loss):
    """Weighted softmax CE and class-specific L1 box loss (Box2BoxTransform((10, 10, 5, 5))), each
    divided by the number of proposals, written out."""
    scores, deltas = scores.double(), deltas.double()
    ce = -(scores.log_softmax(1)[torch.arange(len(scores)), gt_classes])
    fg = gt_classes < K
    t = ref_deltas(proposals[fg], gt_boxes[fg]).double() * torch.tensor([10.0, 10.0, 5.0, 5.0], dtype=torch.float64)
    pred = deltas.view(len(scores), K, 4)[fg.nonzero().flatten(), gt_classes[fg]]
    per_box = (pred - t).abs().sum(1) * (weights[fg].double() if weight_box_loss else 1.0)
    n = len(scores)
    return {"loss_cls": float((ce * weights.double()).sum()) / n, "loss_box_reg": float(per_box.sum()) / n}


def _fast_rcnn_case(agnostic=False):
    """5 proposals (classes 0, 2, background, 1, 0) with weights 2, 0.5, 1, 3, 1.5."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    scores, deltas = torch.randn(5, K + 1, generator=g), torch.randn(5, 4 if agnostic else 4 * K, generator=g) * 0.1
    props = Instances((100, 100))
    props.proposal_boxes = Boxes(torch.tensor(
        [[0, 0, 20, 20], [10, 10, 50, 40], [60, 60, 90, 90], [5, 50, 45, 95], [30, 0, 60, 30]], dtype=torch.float32))
    props.gt_boxes = Boxes(torch.tensor(
        [[2, 1, 22, 23], [12, 8, 52, 44], [0, 0, 1, 1], [4, 52, 44, 90], [28, 2, 61, 33]], dtype=torch.float32))
    props.gt_classes = torch.tensor([0, 2, K, 1, 0])
    props.scb_weights = torch.tensor([2.0, 0.5, 1.0, 3.0, 1.5])
    return scores, deltas, props


@pytest.mark.parametrize("weight_box_loss", [None, False, True])
def test_fast_rcnn_predictor_losses_by_hand(d2, weight_box_loss):
    """loss_cls = Σ w·CE / 5 and loss_box_reg = Σ_fg (w·) L1 / 5, as the reference computes them
    (weight_box_loss None: not passed, i.e. False); with loss_weight {"loss_cls": 2} only loss_cls
    doubles; without scb_weights the predictor is detectron2's FastRCNNOutputLayers; no proposal at all
    gives zero losses, not NaN."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers
    from detectron2.utils.events import EventStorage

    from scale_balanced import ScaleBalancedFastRCNNOutputLayers

    kw = dict(box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=K)
    extra = {} if weight_box_loss is None else {"weight_box_loss": weight_box_loss}
    predictor = ScaleBalancedFastRCNNOutputLayers(ShapeSpec(channels=16), loss_weight={"loss_cls": 2.0}, **extra, **kw)
    scores, deltas, props = _fast_rcnn_case()
    with EventStorage():
        losses = predictor.losses((scores, deltas), [props])
        ref = fast_rcnn_reference(scores, deltas, props.proposal_boxes.tensor, props.gt_boxes.tensor,
                                  props.gt_classes, props.scb_weights, bool(weight_box_loss))
        assert losses["loss_cls"].item() == pytest.approx(2 * ref["loss_cls"], rel=1e-5)
        assert losses["loss_box_reg"].item() == pytest.approx(ref["loss_box_reg"], rel=1e-5)
        empty = predictor.losses((scores[:0], deltas[:0]), [props[:0]])
        assert all(v.item() == 0.0 for v in empty.values()), empty
        props.remove("scb_weights")
        vanilla = FastRCNNOutputLayers(ShapeSpec(channels=16), loss_weight={"loss_cls": 2.0}, **kw)
        plain = predictor.losses((scores, deltas), [props])
        assert all(torch.equal(plain[k], v) for k, v in vanilla.losses((scores, deltas), [props]).items())
    with pytest.raises(ValueError, match="softmax"):
        ScaleBalancedFastRCNNOutputLayers(ShapeSpec(channels=16), use_sigmoid_ce=True, **kw)


@pytest.mark.parametrize("settings", [{"smooth_l1_beta": 0.5}, {"box_reg_loss_type": "giou"},
                                      {"cls_agnostic_bbox_reg": True}])
def test_fast_rcnn_weighted_box_loss_follows_the_predictor_settings(d2, settings):
    """With every weight 1, the weighted box loss equals detectron2's for the predictor's own smooth-L1
    β, loss type and class-agnostic regression; with the case's weights it differs."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers
    from detectron2.utils.events import EventStorage

    from scale_balanced import ScaleBalancedFastRCNNOutputLayers

    kw = dict(box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=K, **settings)
    scores, deltas, props = _fast_rcnn_case(agnostic=settings.get("cls_agnostic_bbox_reg", False))
    predictor = ScaleBalancedFastRCNNOutputLayers(ShapeSpec(channels=16), weight_box_loss=True, **kw)
    with EventStorage():
        weighted = predictor.losses((scores, deltas), [props])["loss_box_reg"]
        props.scb_weights = torch.ones(5)
        ones = predictor.losses((scores, deltas), [props])["loss_box_reg"]
        props.remove("scb_weights")
        vanilla = FastRCNNOutputLayers(ShapeSpec(channels=16), **kw).losses((scores, deltas), [props])["loss_box_reg"]
    torch.testing.assert_close(ones, vanilla, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(weighted, vanilla)


# The SSD-SCB configs are tested in test_ssd_scb.py, the FSSD-SCB, DSSD-SCB and RefineDet-SCB ones in test_fssd.py,
# test_dssd.py and test_refinedet.py.
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "ScaleBalanced", "*.py"))
    if not os.path.basename(p).startswith(("ssd", "fssd", "dssd", "refinedet"))
)
RETINANET_KEYS = ("weighting_form", "scb_alpha", "scb_beta", "weight_box_loss", "normalize_by")
PAPER = {"weighting_form": "scale_balanced", "scb_alpha": 1.0, "scb_beta": 3.0, "weight_box_loss": False}


def expected_scb_settings(name):
    """What each shipped config must put into the model: {part: {attribute: value}}."""
    if name.startswith("retinanet"):
        retina = {**PAPER, "normalize_by": "num_pos"}
        variant = name[len("retinanet_scb_R_50_FPN_1x"):-3] if "R_50" in name else ""
        if variant.startswith("_w_"):
            retina["weighting_form"] = variant[3:]
        elif variant == "_box":
            retina["weight_box_loss"] = True
        elif variant == "_wsum":
            retina["normalize_by"] = "weight_sum"
        return {"model": retina}
    out = {"proposal_generator": {**PAPER, "normalize_by": "num_sampled", "count_sampled": False}}
    if name.endswith("_roi.py"):
        out["roi_heads"] = {"weighting_form": "scale_balanced", "scb_alpha": 1.0, "scb_beta": 3.0, "count_sampled": False}
        out["roi_heads.box_predictor"] = {"weight_box_loss": False}
    return out


def _part(model, path):
    for attr in path.split(".")[1:] if path.startswith("model") else path.split("."):
        model = getattr(model, attr)
    return model


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_values_reach_the_model(d2, path):
    """Every shipped config instantiates its model with its SCB settings (the _w_* forms, _box, _wsum,
    _roi variants included) and the right classes; the plain configs evaluate COCO AP on their test set."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling import StandardROIHeads
    from omegaconf import OmegaConf

    from scale_balanced import (ScaleBalancedFastRCNNOutputLayers, ScaleBalancedROIHeads, ScaleBalancedRPN,
                                RetinaNetSCB)

    name = os.path.basename(path)
    cfg = LazyConfig.load(path)
    model = instantiate(cfg.model)
    for part, settings in expected_scb_settings(name).items():
        obj = _part(model, part)
        assert {k: getattr(obj, k) for k in settings} == settings, (name, part)
    if name.startswith("retinanet"):
        assert type(model) is RetinaNetSCB
    else:
        assert type(model.proposal_generator) is ScaleBalancedRPN
        roi = name.endswith("_roi.py")
        assert type(model.roi_heads) is (ScaleBalancedROIHeads if roi else StandardROIHeads)
        assert isinstance(model.roi_heads.box_predictor, ScaleBalancedFastRCNNOutputLayers) == roi
    assert cfg.train.output_dir.endswith(name[:-3])
    if not name.endswith("_recall.py"):
        evaluator = OmegaConf.to_container(cfg.dataloader.evaluator, resolve=True)
        assert "COCOEvaluator" in str(evaluator["_target_"])
        assert evaluator["dataset_name"] == cfg.dataloader.test.dataset.names


RETINANET_CONFIGS = [p for p in CONFIGS if os.path.basename(p).startswith("retinanet")]


@pytest.mark.parametrize("path", RETINANET_CONFIGS, ids=[os.path.basename(p) for p in RETINANET_CONFIGS])
def test_retinanet_config_settings_compute_their_losses(d2, path):
    """The config's SCB settings, on the tiny seeded RetinaNet-SCB, give the reference losses; every
    variant's losses differ from the paper setting's (the switch changes what is computed)."""
    from detectron2.config import LazyConfig

    from scale_balanced import RetinaNetSCB

    cfg = LazyConfig.load(path)
    switches = {k: cfg.model[k] for k in RETINANET_KEYS}
    inputs = batch()
    losses, _, anchors, logits, deltas = _retinanet_step(tiny_retinanet(RetinaNetSCB, smooth_l1_beta=0.1, **switches), inputs)
    ref = retinanet_reference(inputs, anchors, logits, deltas, **_ref_kwargs(switches))
    paper = retinanet_reference(inputs, anchors, logits, deltas, **_ref_kwargs({}))
    for k in ("loss_cls", "loss_box_reg"):
        assert losses[k].item() == pytest.approx(ref[k], rel=1e-5), k
    changed = [k for k in ("loss_cls", "loss_box_reg") if ref[k] != pytest.approx(paper[k], rel=1e-4)]
    # Table 1's last row, β(log M + 1)/M, is Eq. 3 at α = 1: the w_log_over_m config computes the paper's loss.
    same_as_paper = {**switches, "weighting_form": "scale_balanced"} if switches["weighting_form"] == "log_over_m" else switches
    assert bool(changed) == (same_as_paper != {**PAPER, "normalize_by": "num_pos"}), (switches, changed)


FASTER_CONFIGS = [p for p in CONFIGS if os.path.basename(p).startswith("faster_rcnn")]


@pytest.mark.parametrize("path", FASTER_CONFIGS, ids=[os.path.basename(p) for p in FASTER_CONFIGS])
def test_faster_rcnn_config_settings_compute_their_losses(d2, path):
    """The config's RPN settings give the reference RPN losses on the tiny model; the _roi config's ROI
    settings give the reference per-proposal weights."""
    from detectron2.config import LazyConfig
    from detectron2.layers import cat
    from detectron2.structures import Boxes
    from detectron2.utils.events import EventStorage

    cfg = LazyConfig.load(path)
    switches = {k: cfg.model.proposal_generator[k] for k in (*RETINANET_KEYS, "count_sampled")}
    model = tiny_rcnn(rpn_kwargs={"batch_size_per_image": 8, "positive_fraction": 0.25, **switches})
    spy = _Spy(model.proposal_generator, "losses")
    inputs = batch()
    losses, _ = train_losses(model, inputs)
    anchors, logits, sampled, deltas, _ = spy.calls[-1]
    ref, _ = rpn_reference(
        inputs, Boxes.cat(anchors).tensor, cat(logits, dim=1).detach(), cat(deltas, dim=1).detach(), sampled,
        **{k: v for k, v in _ref_kwargs(switches).items() if k != "normalize_by"},
        normalize_by=switches["normalize_by"], count_sampled=switches["count_sampled"],
    )
    for k in ref:
        assert losses[k].item() == pytest.approx(ref[k], rel=1e-5), k
    if os.path.basename(path).endswith("_roi.py"):
        roi = {k: cfg.model.roi_heads[k] for k in ("weighting_form", "scb_alpha", "scb_beta", "count_sampled")}
        model = tiny_rcnn(scb_roi=True, roi_kwargs={"batch_size_per_image": 4, "positive_fraction": 0.5, **roi})
        torch.manual_seed(0)
        with EventStorage():
            (out,) = model.roi_heads.label_and_sample_proposals(*roi_case())
        fg = (out.gt_classes < K).tolist()
        expected = [ref_weight(6 if b == A_BOX else 2) if f else 1.0 for b, f in zip(out.gt_boxes.tensor.tolist(), fg)]
        assert out.scb_weights.tolist() == pytest.approx(expected, rel=1e-6)


RECALL_CONFIGS = [p for p in CONFIGS if p.endswith("_recall.py")]


@pytest.mark.parametrize("path", RECALL_CONFIGS, ids=[os.path.basename(p) for p in RECALL_CONFIGS])
def test_recall_configs_turn_the_model_nms_off_and_tell_the_evaluator(d2, path):
    """The protocol configs: the model's NMS is off (1.0), its score threshold is the lowest protocol
    threshold, its cap is at least every candidate it can make, and the evaluator receives exactly these
    values (interpolated, so command-line overrides reach it); turning the model's NMS back on makes the
    evaluator refuse to run."""
    from detectron2.config import LazyConfig, instantiate

    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator

    cfg = LazyConfig.load(path)
    model = instantiate(cfg.model)
    ev = instantiate(cfg.dataloader.evaluator)
    assert isinstance(ev, RecallBySizeEvaluator) and ev.dataset_name == cfg.dataloader.test.dataset.names
    if os.path.basename(path).startswith("retinanet"):
        settings = (model.test_score_thresh, model.test_nms_thresh, model.max_detections_per_image)
        assert model.max_detections_per_image >= model.test_topk_candidates * len(model.head_in_features)
        override = "model.test_nms_thresh=0.5"
    else:
        p = model.roi_heads.box_predictor
        settings = (p.test_score_thresh, p.test_nms_thresh, p.test_topk_per_image)
        proposals = model.proposal_generator.post_nms_topk[False]
        assert p.test_topk_per_image >= proposals * model.roi_heads.num_classes
        override = "model.roi_heads.box_predictor.test_nms_thresh=0.5"
    assert settings == (ev.model_score_thresh, ev.model_nms_thresh, ev.model_max_dets)
    assert settings[:2] == (min(ev.score_thresholds), 1.0) and ev.size_by == "original"
    by_input = LazyConfig.apply_overrides(cfg, ["dataloader.evaluator.size_by=input"])
    assert instantiate(by_input.dataloader.evaluator).size_by == "input"
    cfg = LazyConfig.apply_overrides(cfg, [override])
    with pytest.raises(ValueError, match="applies its own NMS"):
        instantiate(cfg.dataloader.evaluator)


def test_configs_cover_the_issue():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {
        "retinanet_scb_R_50_FPN_1x.py", "faster_rcnn_scb_R_50_FPN_1x.py", "retinanet_scb_shapes.py",
        "faster_rcnn_scb_shapes.py", "retinanet_scb_R_50_FPN_1x_box.py", "retinanet_scb_R_50_FPN_1x_wsum.py",
        "faster_rcnn_scb_R_50_FPN_1x_roi.py",
    } <= names
    assert {f"retinanet_scb_R_50_FPN_1x_w_{f}.py" for f in ("const", "inv_log", "inv_sqrt", "inv", "log_over_m")} <= names
    assert {f"{n[:-3]}_recall.py" for n in ("retinanet_scb_shapes.py", "faster_rcnn_scb_shapes.py",
                                            "retinanet_scb_R_50_FPN_1x.py", "faster_rcnn_scb_R_50_FPN_1x.py")} <= names
