"""RetinaNet-SCB, ScaleBalancedRPN and the optional SCB ROI heads on tiny CPU models."""
import glob
import math
import os

import pytest
import torch

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
    rpn = rpn_cls(
        in_features=["p3", "p4"],
        head=StandardRPNHead(in_channels=8, num_anchors=3),
        anchor_generator=DefaultAnchorGenerator(sizes=[[24], [48]], aspect_ratios=[0.5, 1.0, 2.0], strides=[8, 16]),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=64,
        positive_fraction=0.5,
        pre_nms_topk=(200, 100),
        post_nms_topk=(50, 30),
        **(rpn_kwargs or {}),
    )
    predictor_cls = ScaleBalancedFastRCNNOutputLayers if scb_roi else FastRCNNOutputLayers
    heads_cls = ScaleBalancedROIHeads if scb_roi else StandardROIHeads
    roi = heads_cls(
        box_in_features=["p3", "p4"],
        box_pooler=ROIPooler(output_size=7, scales=(1 / 8, 1 / 16), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16]),
        box_predictor=predictor_cls(
            ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=K
        ),
        num_classes=K,
        batch_size_per_image=32,
        positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        **(roi_kwargs or {}),
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
    positives'), the forms give const: N + P, inv: N + P/M, scale_balanced: N + W·P. Solving the
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
    p = (cls["const"] - cls["inv"]) / (1 - 1 / m)
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


CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "ScaleBalanced", "*.py")))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_instantiates(d2, path):
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    cfg = LazyConfig.load(path)
    model = instantiate(cfg.model)
    evaluators = OmegaConf.to_container(cfg.dataloader.evaluator, resolve=True)
    names = {e["dataset_name"] for e in evaluators}
    assert names == {cfg.dataloader.test.dataset.names}, names
    assert any("RecallBySizeEvaluator" in str(e["_target_"]) for e in evaluators)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.train.output_dir.endswith(os.path.basename(path)[:-3])


def test_configs_cover_the_issue():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {
        "retinanet_scb_R_50_FPN_1x.py", "faster_rcnn_scb_R_50_FPN_1x.py", "retinanet_scb_shapes.py",
        "faster_rcnn_scb_shapes.py", "retinanet_scb_R_50_FPN_1x_box.py",
    } <= names
    assert {f"retinanet_scb_R_50_FPN_1x_w_{f}.py" for f in ("const", "inv_log", "inv_sqrt", "inv", "log_over_m")} <= names


