"""RetinaNet-ResObj, RetinaNet-Obj (T=0) and FasterRCNN-ResObj on tiny models, CPU, in seconds."""
import math

import pytest
import torch
import torch.nn.functional as F

from tiny_retinanet import train_step

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 3
LEVELS = ["p3", "p4", "p5", "p6", "p7"]


def tiny_fpn(top="p6p7"):
    """ResNet with one narrow BasicBlock per stage (8-32 channels) and a 16-channel FPN."""
    from detectron2.modeling.backbone import FPN, BasicStem, ResNet
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
    from detectron2.modeling.backbone.resnet import BasicBlock

    widths = [8, 8, 16, 24, 32]  # stem, res2..res5 (a stride-2 BasicBlock needs a width change)
    stages = [
        ResNet.make_stage(BasicBlock, 1, in_channels=widths[i], out_channels=widths[i + 1],
                          stride_per_block=[1 if i == 0 else 2], norm="")
        for i in range(4)
    ]
    if top == "p6p7":
        bottom_up = ResNet(BasicStem(3, 8, norm=""), stages, out_features=["res3", "res4", "res5"])
        return FPN(bottom_up=bottom_up, in_features=["res3", "res4", "res5"], out_channels=16,
                   top_block=LastLevelP6P7(16, 16, in_feature="p5"))
    bottom_up = ResNet(BasicStem(3, 8, norm=""), stages, out_features=["res2", "res3", "res4", "res5"])
    return FPN(bottom_up=bottom_up, in_features=["res2", "res3", "res4", "res5"], out_channels=16,
               top_block=LastLevelMaxPool())


def retina_parts():
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher

    return dict(
        backbone=tiny_fpn(),
        head_in_features=LEVELS,
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[16], [32], [64], [128], [256]], aspect_ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]
        ),
        box2box_transform=Box2BoxTransform(weights=[1.0, 1.0, 1.0, 1.0]),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        num_classes=NUM_CLASSES,
        pixel_mean=[103.53, 116.28, 123.675],
        pixel_std=[57.375, 57.12, 58.395],
    )


def resobj_head(num_steps=2, **kwargs):
    from detectron2.layers import ShapeSpec
    from resobj import ResObjHead

    return ResObjHead(input_shape=[ShapeSpec(channels=16)] * 5, num_classes=NUM_CLASSES, num_anchors=3,
                      conv_dims=[16], num_steps=num_steps, objectness_conv_dim=8, **kwargs)


def tiny_resobj(num_steps=2, head_kwargs=None, **kwargs):
    from resobj import RetinaNetResObj

    torch.manual_seed(0)
    return RetinaNetResObj(head=resobj_head(num_steps, **(head_kwargs or {})), **retina_parts(), **kwargs)


def tiny_retinanet():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead

    torch.manual_seed(0)
    head = RetinaNetHead(input_shape=[ShapeSpec(channels=16)] * 5, num_classes=NUM_CLASSES, num_anchors=3, conv_dims=[16])
    return RetinaNet(head=head, **retina_parts())


def images(boxes_per_image=((3,), (1,)), seed=0, size=(200, 250)):
    """Two random ~200x250 images; boxes_per_image gives each image's GT classes (empty = no GT)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for classes in boxes_per_image:
        h, w = size
        inst = Instances((h, w))
        xy = torch.rand(len(classes), 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = 30 + torch.rand(len(classes), 2, generator=g) * 80
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.tensor([c % NUM_CLASSES for c in classes], dtype=torch.long)
        batch.append({"image": torch.rand(3, h, w, generator=g) * 255, "instances": inst, "height": h, "width": w})
    return batch


# ---------------------------------------------------------------- head


@pytest.mark.parametrize("num_steps,residual_input", [(0, "objectness"), (2, "objectness"), (3, "class")])
def test_head_output_shapes(num_steps, residual_input):
    head = resobj_head(num_steps, residual_input=residual_input)
    sizes = [(8, 10), (4, 5), (2, 3), (1, 2), (1, 1)]
    outs = head([torch.rand(2, 16, h, w) for h, w in sizes])
    assert len(outs) == 3 + num_steps
    for lvl, (h, w) in enumerate(sizes):
        assert outs[0][lvl].shape == (2, 3 * NUM_CLASSES, h, w)
        assert outs[1][lvl].shape == (2, 3 * 4, h, w)
        for extra in outs[2:]:
            assert extra[lvl].shape == (2, 3, h, w)


def test_head_priors():
    head = resobj_head(1, objectness_prior=0.01, residual_prior=0.001)
    assert torch.sigmoid(head.obj_score.bias).allclose(torch.tensor(0.01))
    assert torch.sigmoid(head.res_scores[0].bias).allclose(torch.tensor(0.001))
    assert torch.sigmoid(head.cls_score.bias).allclose(torch.tensor(1.0 / NUM_CLASSES))
    assert resobj_head(1).res_scores[0].bias.abs().sum() == 0  # default: r_t starts at 0


@pytest.mark.parametrize("isolate", [True, False])
def test_head_isolation_blocks_residual_gradient_into_objectness_subnet(isolate):
    """A loss on r_1 alone reaches obj_subnet and the class tower only without isolation (Table 2a)."""
    head = resobj_head(1, isolate_residual_grad=isolate)
    outs = head([torch.rand(1, 16, 4, 4) for _ in range(5)])
    sum(r.sum() for r in outs[3]).backward()
    obj_grad = head.obj_subnet[0].weight.grad
    tower_grad = head.cls_subnet[0].weight.grad
    assert head.res_subnets[0][0].weight.grad.abs().sum() > 0
    if isolate:
        assert obj_grad is None and tower_grad is None
    else:
        assert obj_grad.abs().sum() > 0 and tower_grad.abs().sum() > 0


def _head(conv_dims, norm="", num_steps=2, **kwargs):
    from detectron2.layers import ShapeSpec
    from resobj import ResObjHead

    return ResObjHead(input_shape=[ShapeSpec(channels=16)] * 5, num_classes=NUM_CLASSES, num_anchors=3,
                      conv_dims=conv_dims, norm=norm, num_steps=num_steps, objectness_conv_dim=8, **kwargs)


@pytest.mark.parametrize("residual_input", ["objectness", "class"])
def test_head_subnets_read_the_last_tower_width(residual_input):
    """Towers 16 -> 12 -> 20 channels: the objectness subnet reads the class tower's output, 20 channels
    (conv_dims[-1], not conv_dims[0] = 12); a residual subnet reads 8 (objectness) or 20 (class)."""
    head = _head([12, 20], residual_input=residual_input)
    assert head.obj_subnet[0].in_channels == 20
    assert all(s[0].in_channels == (8 if residual_input == "objectness" else 20) for s in head.res_subnets)
    outs = head([torch.rand(1, 16, 4, 4) for _ in range(5)])
    assert [o[0].shape[1] for o in outs] == [3 * NUM_CLASSES, 12, 3, 3, 3]


@pytest.mark.parametrize("norm", ["GN", "BN", "SyncBN"])
def test_head_norm_reaches_the_towers_and_the_new_subnets(norm):
    """norm goes to RetinaNetHead's class and box towers (32 channels) and to every obj/res hidden conv
    (8 channels): GN as GroupNorm (32 groups in detectron2's towers, 4 = 8/2 in ours, see group_norm);
    BN / SyncBN as detectron2's RetinaNetHead builds them, a CycleBatchNormList of one BN (of that
    class, affine=False) per FPN level, 5 here."""
    from detectron2.layers import CycleBatchNormList

    head = _head([32], norm=norm)
    bn_class = {"BN": torch.nn.BatchNorm2d, "SyncBN": torch.nn.SyncBatchNorm}.get(norm)
    towers = [head.cls_subnet, head.bbox_subnet]
    subnets = [head.obj_subnet, *head.res_subnets]
    for seq, channels in [(t, 32) for t in towers] + [(s, 8) for s in subnets]:
        assert len(seq) == 3 and type(seq[0]) is torch.nn.Conv2d and type(seq[2]) is torch.nn.ReLU
        layer = seq[1]
        if norm == "GN":
            assert type(layer) is torch.nn.GroupNorm
            assert (layer.num_groups, layer.num_channels) == ((32, 32) if channels == 32 else (4, 8))
        else:
            assert type(layer) is CycleBatchNormList and len(layer) == 5
            assert all(type(bn) is bn_class and bn.num_features == channels for bn in layer)
    if norm == "BN":
        # One training forward over the 5 levels: each level's BN sees exactly one batch.
        head.train()
        head([torch.rand(2, 16, 4, 4) for _ in range(5)])
        for seq in towers + subnets:
            assert [bn.num_batches_tracked.item() for bn in seq[1]] == [1] * 5


def test_bad_head_options_raise():
    with pytest.raises(ValueError, match="residual_input='box'"):
        resobj_head(1, residual_input="box")
    with pytest.raises(ValueError, match="num_steps=-1"):
        resobj_head(-1)


# ---------------------------------------------------------------- RetinaNet-ResObj


def test_retinanet_resobj_train_step_and_inference():
    model = tiny_resobj(2)
    losses, scalars = train_step(model, images())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_obj", "loss_res_t1", "loss_res_t2"}
    for name, value in losses.items():
        assert torch.isfinite(value) and value.item() > 0, name  # one GT per image: every loss > 0
    for t in range(3):
        assert 0 < scalars[f"train/resobj/obj_pos_t{t}"] < 1 and 0 < scalars[f"train/resobj/obj_neg_t{t}"] < 1
    for t in (1, 2):
        assert scalars[f"train/resobj/gated_t{t}"] >= 1 and 0 < scalars[f"train/resobj/min_pos_score_t{t}"] < 1
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    model.eval()
    model.test_score_thresh = 0.0  # untrained: keep everything to check the fused scores
    with torch.no_grad():
        out = model(images())
    assert len(out) == 2
    inst = out[0]["instances"]
    assert 0 < len(inst) <= 100 and inst.image_size == (200, 250)
    assert (inst.scores <= 1).all() and (inst.scores[:-1] >= inst.scores[1:]).all()


def test_image_without_ground_truth():
    """One image with no objects, one with: no NaN; the box loss is 0 when the whole batch is empty."""
    model = tiny_resobj(2)
    losses, _ = train_step(model, images(((), (2,))))
    assert all(torch.isfinite(v) for v in losses.values())
    model = tiny_resobj(2)
    losses, scalars = train_step(model, images(((), ())))
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_cls"].item() == 0.0
    assert losses["loss_res_t1"].item() == 0.0 and losses["loss_res_t2"].item() == 0.0
    assert losses["loss_obj"].item() > 0 and all(torch.isfinite(v) for v in losses.values())
    assert "train/resobj/obj_pos_t0" not in scalars and scalars["train/resobj/gated_t1"] == 0.0


def test_zero_steps_is_retinanet_obj():
    """T=0 is RetinaNet-Obj: its losses are sigmoid CE on positives, BCE objectness on valid anchors
    and the box loss, each / the normaliser 0.9 * 100 + 0.1 * num_pos (first step of the EMA that
    starts at 100); and the shared
    branches of a T=2 model with the same weights give identical losses."""
    from detectron2.layers import cat
    from detectron2.modeling.box_regression import _dense_box_regression_loss

    batch = images(((0, 1), (2,)))
    obj = tiny_resobj(0)
    losses, _ = train_step(obj, batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_obj"}

    # Independent computation from the raw head outputs.
    obj.zero_grad()
    with torch.no_grad():
        imgs = obj.preprocess_image(batch)
        feats = obj.backbone(imgs.tensor)
        feats = [feats[f] for f in obj.head_in_features]
        logits, deltas, objectness = obj._transpose_dense_predictions(obj.head(feats), [NUM_CLASSES, 4, 1])
        anchors = obj.anchor_generator(feats)
        gt_labels, gt_boxes = obj.label_anchors(anchors, [b["instances"] for b in batch])
        labels = torch.stack(gt_labels)
        valid, pos = labels >= 0, (labels >= 0) & (labels < NUM_CLASSES)
        n = 0.9 * 100 + 0.1 * pos.sum().item()
        o = cat(objectness, 1).squeeze(2)
        ref_obj = F.binary_cross_entropy_with_logits(o[valid], pos[valid].float(), reduction="sum") / n
        onehot = F.one_hot(labels[pos], NUM_CLASSES).float()
        ref_cls = F.binary_cross_entropy_with_logits(cat(logits, 1)[pos], onehot, reduction="sum") / n
        ref_box = _dense_box_regression_loss(anchors, obj.box2box_transform, deltas, gt_boxes, pos,
                                             box_reg_loss_type="smooth_l1", smooth_l1_beta=0.0) / n
    assert losses["loss_obj"].item() == pytest.approx(ref_obj.item(), rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(ref_cls.item(), rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(ref_box.item(), rel=1e-5)

    resobj = tiny_resobj(2)
    incompatible = resobj.load_state_dict(obj.state_dict(), strict=False)
    assert not incompatible.unexpected_keys
    assert all(k.startswith("head.res_") for k in incompatible.missing_keys)
    losses2, _ = train_step(resobj, batch)
    for k in ("loss_cls", "loss_box_reg", "loss_obj"):
        assert losses2[k].item() == losses[k].item(), k

    # With zero residual logits the T=2 detections equal RetinaNet-Obj's exactly.
    with torch.no_grad():
        for score in resobj.head.res_scores:
            score.weight.zero_()
            score.bias.zero_()
    for m in (obj, resobj):
        m.eval()
        m.test_score_thresh = 0.0
    with torch.no_grad():
        a, b = obj(batch)[0]["instances"], resobj(batch)[0]["instances"]
    assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)


def test_fusion_happens_before_threshold_and_uses_the_chosen_step():
    """A huge residual bias lifts sigmoid(o_T) to ~1, so detections pass a 0.2 threshold that
    sigmoid(cls) * sigmoid(o_0) (~0.01/K) never passes; with step 0 nothing passes."""
    model = tiny_resobj(1)
    with torch.no_grad():
        model.head.res_scores[0].bias.fill_(30.0)
        model.head.cls_score.weight.zero_()
        model.head.cls_score.bias.zero_()  # P(class | obj) = 0.5 everywhere
    model.eval()
    model.test_score_thresh = 0.2
    with torch.no_grad():
        final = model(images())[0]["instances"]
        model.test_objectness_step = 0
        first = model(images())[0]["instances"]
    assert len(final) > 0 and final.scores.max().item() == pytest.approx(0.5, abs=1e-3)
    assert len(first) == 0


def test_official_mode():
    """Authors'-code mode: one objectness loss (no residual keys), class loss / 10 and objectness / 20
    relative to the same model in paper mode with the gradient not isolated."""
    kwargs = dict(head_kwargs={"isolate_residual_grad": False})
    paper, _ = train_step(tiny_resobj(1, **kwargs), images())
    official, scalars = train_step(tiny_resobj(1, cascade_mode="official", **kwargs), images())
    assert set(official) == {"loss_cls", "loss_box_reg", "loss_obj"}
    assert official["loss_cls"].item() == pytest.approx(paper["loss_cls"].item() / 10, rel=1e-5)
    assert official["loss_box_reg"].item() == pytest.approx(paper["loss_box_reg"].item(), rel=1e-5)
    assert "train/resobj/obj_pos_t1" in scalars and "train/resobj/gated_t1" not in scalars
    with pytest.raises(ValueError, match="isolate_residual_grad=False"):
        tiny_resobj(1, cascade_mode="official")
    with pytest.raises(ValueError, match="gate='all'"):
        tiny_resobj(1, gate="all")


def test_vanilla_retinanet_checkpoint_loads_with_only_new_branches_missing(tmp_path):
    from d2imbalance.checkpoint import load_checkpoint_with_report

    path = tmp_path / "retinanet.pth"
    torch.save({"model": tiny_retinanet().state_dict()}, path)
    model = tiny_resobj(2)
    report = load_checkpoint_with_report(model, str(path))
    new = {k for k in model.state_dict() if k.startswith(("head.obj_", "head.res_"))}
    assert new and set(report.missing) == new
    assert report.shape_mismatch == {} and report.unexpected == []
    assert set(report.loaded) == set(model.state_dict()) - new


# ---------------------------------------------------------------- FasterRCNN-ResObj


def tiny_faster_rcnn(num_steps=2, head=None, **rpn_kwargs):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.meta_arch import GeneralizedRCNN
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers, StandardROIHeads
    from resobj import ResObjRPN, ResObjRPNHead

    torch.manual_seed(0)
    rpn = ResObjRPN(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=head or ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=num_steps, residual_conv_dim=8),
        anchor_generator=DefaultAnchorGenerator(sizes=[[16], [32], [64], [128], [256]], aspect_ratios=[0.5, 1.0, 2.0],
                                                strides=[4, 8, 16, 32, 64]),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(weights=[1.0, 1.0, 1.0, 1.0]),
        pre_nms_topk=(200, 100),
        post_nms_topk=(100, 50),
        **rpn_kwargs,
    )
    roi_heads = StandardROIHeads(
        num_classes=NUM_CLASSES,
        batch_size_per_image=32,
        positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=ROIPooler(output_size=7, scales=(1 / 4, 1 / 8, 1 / 16, 1 / 32), sampling_ratio=0,
                             pooler_type="ROIAlignV2"),
        box_head=FastRCNNConvFCHead(input_shape=ShapeSpec(channels=16, height=7, width=7), conv_dims=[], fc_dims=[32]),
        box_predictor=FastRCNNOutputLayers(input_shape=ShapeSpec(channels=32), num_classes=NUM_CLASSES,
                                           box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
                                           test_score_thresh=0.0),
    )
    return GeneralizedRCNN(backbone=tiny_fpn("maxpool"), proposal_generator=rpn, roi_heads=roi_heads,
                           pixel_mean=[103.53, 116.28, 123.675], pixel_std=[57.375, 57.12, 58.395])


def test_faster_rcnn_resobj_train_step_and_inference():
    model = tiny_faster_rcnn(2)
    losses, scalars = train_step(model, images())
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_rpn_res_t1", "loss_rpn_res_t2", "loss_cls", "loss_box_reg"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_rpn_cls"].item() > 0 and losses["loss_rpn_res_t1"].item() > 0
    assert "train/rpn_resobj/obj_pos_t2" in scalars and scalars["train/rpn_resobj/gated_t1"] > 0
    # No sampling: every non-ignored anchor counts (far more than detectron2's 256 per image).
    assert scalars["rpn/num_pos_anchors"] + scalars["rpn/num_neg_anchors"] > 256
    assert all(p.grad is not None for p in model.proposal_generator.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images())
    assert len(out) == 2 and len(out[0]["instances"]) > 0


def test_rpn_does_not_subsample_labels():
    model = tiny_faster_rcnn(1)
    rpn = model.proposal_generator
    batch = images()
    feats = model.backbone(model.preprocess_image(batch).tensor)
    anchors = rpn.anchor_generator([feats[f] for f in rpn.in_features])
    labels, _ = rpn.label_and_sample_anchors(anchors, [b["instances"] for b in batch])
    from detectron2.structures import Boxes, pairwise_iou

    for lab, b in zip(labels, batch):
        _, expected = rpn.anchor_matcher(pairwise_iou(b["instances"].gt_boxes, Boxes.cat(anchors)))
        assert torch.equal(lab, expected)


class _FixedRPNHead(torch.nn.Module):
    """Returns fixed o_0, deltas and r_1 so the ranking can be checked against o_0 + r_1."""

    num_steps = 1
    isolate_residual_grad = True

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, features):
        g = torch.Generator().manual_seed(1)
        shapes = [(f.shape[0], 3, f.shape[2], f.shape[3]) for f in features]
        obj = [torch.randn(*s, generator=g) for s in shapes]
        res = [5 * torch.randn(*s, generator=g) for s in shapes]
        deltas = [torch.zeros(s[0], 12, s[2], s[3]) for s in shapes]
        return obj, deltas, res


def test_rpn_proposals_sorted_by_final_objectness():
    model = tiny_faster_rcnn(head=_FixedRPNHead(), nms_thresh=1.0)
    model.eval()
    rpn = model.proposal_generator
    rpn.pre_nms_topk[False] = 10_000  # keep every anchor: ranking is then a plain sort
    rpn.post_nms_topk[False] = 20
    rpn.min_box_size = -1.0
    batch = images()
    with torch.no_grad():
        feats = model.backbone(model.preprocess_image(batch).tensor)
        proposals, losses = rpn(model.preprocess_image(batch), feats)
        obj, _, res = rpn.rpn_head([feats[f] for f in rpn.in_features])
    assert losses == {}
    final = torch.cat([(o + r).permute(0, 2, 3, 1).flatten(1) for o, r in zip(obj, res)], dim=1)
    first = torch.cat([o.permute(0, 2, 3, 1).flatten(1) for o in obj], dim=1)
    for i, p in enumerate(proposals):
        scores = p.objectness_logits
        assert (scores[:-1] >= scores[1:]).all()
        assert torch.allclose(scores, final[i].sort(descending=True).values[:20])
        assert not torch.allclose(scores, first[i].sort(descending=True).values[:20])


def test_rpn_normalizer_options():
    base, _ = train_step(tiny_faster_rcnn(1), images())
    by_pos, scalars = train_step(tiny_faster_rcnn(1, loss_normalizer="num_pos"), images())
    n_pos = scalars["rpn/num_pos_anchors"] * 2
    # 256 per image x 2 images vs the positive-count EMA after one step: 0.9 * 100 + 0.1 * count.
    ratio = by_pos["loss_rpn_cls"].item() / base["loss_rpn_cls"].item()
    assert ratio == pytest.approx(512 / (90 + 0.1 * max(n_pos, 1)), rel=1e-4)
    with pytest.raises(ValueError, match="loss_normalizer='mean'"):
        tiny_faster_rcnn(1, loss_normalizer="mean")
    assert math.isfinite(ratio)


def test_rpn_is_registered_for_yacs_configs():
    """MODEL.PROPOSAL_GENERATOR.NAME = "ResObjRPN" and MODEL.RPN.HEAD_NAME = "ResObjRPNHead" build with
    the constructor defaults (T=2, prior 0.01) for users of yacs configs."""
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.proposal_generator import build_proposal_generator
    from resobj import ResObjRPN, ResObjRPNHead

    cfg = get_cfg()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "ResObjRPN"
    cfg.MODEL.RPN.HEAD_NAME = "ResObjRPNHead"
    rpn = build_proposal_generator(cfg, {"res4": ShapeSpec(channels=16, stride=16)})
    assert isinstance(rpn, ResObjRPN) and isinstance(rpn.rpn_head, ResObjRPNHead)
    assert rpn.rpn_head.num_steps == 2 and rpn.cascade_mode == "paper"
    assert torch.sigmoid(rpn.rpn_head.objectness_logits.bias).allclose(torch.tensor(0.01))
