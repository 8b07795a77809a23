"""Model-level loss values of RetinaNet-ResObj and the ResObj RPN against an independent computation, and
every constructor switch reaching the model and changing what it computes by the expected amount.

The reference (:func:`ref_cascade`) is Algorithm 1 written as plain per-image loops over the raw head
outputs, sharing no code with resobj.cascade. Fresh models: the positive-count EMA starts at 100, so the
first step divides by 0.9 * 100 + 0.1 * max(num_pos, 1).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from test_resobj_models import NUM_CLASSES, images, resobj_head, tiny_faster_rcnn, tiny_resobj, train_step

pytestmark = pytest.mark.detectron2

INF = float("inf")


def bce_sum(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum")


def ref_cascade(o0, residuals, labels, gate="image"):
    """Algorithm 1 with loops. o0 and residuals (N, R), labels (N, R) in {1, 0, -1}.

    Returns (L_obj, [L_1..L_T], [threshold per image at each step]) as un-normalised sums."""
    valid, pos = labels >= 0, labels == 1
    loss_obj = bce_sum(o0[valid], pos[valid])
    prev, losses, thresholds = o0.clone(), [], []
    for r in residuals:
        if gate == "image":
            thr = [prev[i][pos[i]].min().item() if pos[i].any() else INF for i in range(len(prev))]
        else:
            thr = [prev[pos].min().item() if pos.any() else INF] * len(prev)
        cur, total = prev.clone(), 0.0
        for i in range(len(prev)):
            g = valid[i] & (prev[i] >= thr[i])
            cur[i][g] = prev[i][g] + r[i][g]
            total = total + bce_sum(cur[i][g], pos[i][g])
        losses.append(total)
        thresholds.append(thr)
        prev = cur
    return loss_obj, losses, thresholds


def spread_residuals(model_head, std=0.5, seed=3):
    """Give the residual score convs O(1) outputs, so gates and losses differ from step to step."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for score in model_head.res_scores:
            score.weight.copy_(torch.randn(score.weight.shape, generator=g) * std)
            score.bias.copy_(torch.randn(score.bias.shape, generator=g))


@torch.no_grad()
def retina_raw(model, batch):
    """Flattened head outputs and anchor labels of RetinaNet-ResObj, computed outside model.losses."""
    from detectron2.layers import cat

    imgs = model.preprocess_image(batch)
    feats = model.backbone(imgs.tensor)
    feats = [feats[f] for f in model.head_in_features]
    outs = model.head(feats)
    k = model.num_classes

    def flat(x, dim):  # (N, A*dim, H, W) -> (N, H*W*A, dim), detectron2's anchor order
        n, _, h, w = x.shape
        return x.view(n, -1, dim, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, dim)

    logits = cat([flat(x, k) for x in outs[0]], 1)
    deltas = [flat(x, 4) for x in outs[1]]
    o0 = cat([flat(x, 1) for x in outs[2]], 1).squeeze(2)
    residuals = [cat([flat(x, 1) for x in r], 1).squeeze(2) for r in outs[3:]]
    anchors = model.anchor_generator(feats)
    gt_labels, gt_boxes = model.label_anchors(anchors, [b["instances"] for b in batch])
    gt = torch.stack(gt_labels)
    pos = (gt >= 0) & (gt < k)
    labels = torch.where(gt < 0, -1, pos.long())
    return dict(logits=logits, deltas=deltas, o0=o0, residuals=residuals, anchors=anchors, gt=gt, pos=pos,
                labels=labels, gt_boxes=gt_boxes, num_pos=int(pos.sum()))


def ref_cls_box(model, raw):
    from detectron2.modeling.box_regression import _dense_box_regression_loss

    pos = raw["pos"]
    onehot = F.one_hot(raw["gt"][pos], NUM_CLASSES).float()
    cls = bce_sum(raw["logits"][pos], onehot)
    box = _dense_box_regression_loss(raw["anchors"], model.box2box_transform, raw["deltas"], raw["gt_boxes"], pos,
                                     box_reg_loss_type=model.box_reg_loss_type, smooth_l1_beta=model.smooth_l1_beta)
    return cls, box


def first_normalizer(num_pos, momentum=0.9, init=100.0):
    return momentum * init + (1 - momentum) * max(num_pos, 1)


# ---------------------------------------------------------------- RetinaNet-ResObj losses


@pytest.mark.parametrize("gate", ["image", "batch"])
def test_paper_mode_losses_match_independent_cascade(gate):
    """loss_obj, loss_res_t1, loss_res_t2, loss_cls, loss_box_reg = reference sums / the normaliser."""
    model = tiny_resobj(2, gate=gate)
    spread_residuals(model.head)
    batch = images(((0, 1), (2,)))
    raw = retina_raw(model, batch)
    losses, scalars = train_step(model, batch)
    norm = first_normalizer(raw["num_pos"])
    assert scalars["resobj/loss_normalizer"] == pytest.approx(norm)
    l_obj, l_res, thr = ref_cascade(raw["o0"], raw["residuals"], raw["labels"], gate)
    cls, box = ref_cls_box(model, raw)
    assert losses["loss_obj"].item() == pytest.approx(l_obj.item() / norm, rel=1e-5)
    for t in (1, 2):
        assert losses[f"loss_res_t{t}"].item() == pytest.approx(l_res[t - 1].item() / norm, rel=1e-5)
        assert l_res[t - 1].item() > 0
    assert losses["loss_cls"].item() == pytest.approx(cls.item() / norm, rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(box.item() / norm, rel=1e-5)
    # Gate statistics: mean gated-set size per image and the mean threshold score over the images.
    gated = sum(((raw["labels"][i] >= 0) & (raw["o0"][i] >= thr[0][i])).sum().item() for i in range(2)) / 2
    assert scalars["train/resobj/gated_t1"] == pytest.approx(gated)
    mean_thr = sum(torch.sigmoid(torch.tensor(x)).item() for x in thr[0]) / 2
    assert scalars["train/resobj/min_pos_score_t1"] == pytest.approx(mean_thr, rel=1e-5)


def test_gate_switch_changes_the_residual_losses():
    """gate="batch" takes one minimum over both images: the image whose own minimum is higher gates more
    anchors, so L_1 differs from gate="image" (each matching its reference, checked above)."""
    batch = images(((0, 1), (2,)))
    per_image, _ = train_step(spread_and_return(tiny_resobj(2, gate="image")), batch)
    per_batch, _ = train_step(spread_and_return(tiny_resobj(2, gate="batch")), batch)
    assert per_image["loss_obj"].item() == per_batch["loss_obj"].item()
    assert per_batch["loss_res_t1"].item() > per_image["loss_res_t1"].item() * 1.01


def spread_and_return(model):
    spread_residuals(model.head)
    return model


def test_official_mode_losses_match_independent_computation():
    """Authors' code: loss_obj = BCE(o_0 + r_1) over valid anchors / (20 n), loss_cls / (10 n), box / n."""
    model = tiny_resobj(1, cascade_mode="official", head_kwargs={"isolate_residual_grad": False})
    spread_residuals(model.head)
    batch = images(((0, 1), (2,)))
    raw = retina_raw(model, batch)
    losses, scalars = train_step(model, batch)
    norm = first_normalizer(raw["num_pos"])
    valid = raw["labels"] >= 0
    summed = raw["o0"] + raw["residuals"][0]
    # No gate in this mode: step t's statistics are of the partial sums o_0 + r_1 + ... + r_t.
    for t, logit in enumerate((raw["o0"], summed)):
        assert scalars[f"train/resobj/obj_pos_t{t}"] == pytest.approx(torch.sigmoid(logit[raw["pos"]]).mean().item(), rel=1e-5)
    ref_obj = bce_sum(summed[valid], raw["pos"][valid])
    cls, box = ref_cls_box(model, raw)
    assert set(losses) == {"loss_obj", "loss_cls", "loss_box_reg"}
    assert losses["loss_obj"].item() == pytest.approx(ref_obj.item() / (20 * norm), rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(cls.item() / (10 * norm), rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(box.item() / norm, rel=1e-5)


def test_official_mode_does_not_all_reduce_and_paper_mode_follows_the_switch():
    off = tiny_resobj(1, cascade_mode="official", head_kwargs={"isolate_residual_grad": False})
    assert off.loss_normalizer.all_reduce is False
    assert tiny_resobj(1).loss_normalizer.all_reduce is True
    assert tiny_resobj(1, num_pos_all_reduce=False).loss_normalizer.all_reduce is False


@pytest.mark.parametrize("isolate", [True, False])
def test_isolate_residual_grad_reaches_the_model(isolate):
    """Back-propagating loss_res_t1 alone: with isolation nothing reaches o_0's subnet or the class tower
    (both the feature and o_0 are detached); without it both receive gradient. The loss value is equal."""
    model = tiny_resobj(1, head_kwargs={"isolate_residual_grad": isolate})
    spread_residuals(model.head)
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage():
        losses = model(images())
    losses["loss_res_t1"].backward()
    for module in (model.head.obj_score, model.head.obj_subnet[0], model.head.cls_subnet[0]):
        grad = module.weight.grad
        if isolate:
            assert grad is None or grad.abs().sum() == 0
        else:
            assert grad is not None and grad.abs().sum() > 0
    assert model.head.res_scores[0].weight.grad.abs().sum() > 0
    other = tiny_resobj(1, head_kwargs={"isolate_residual_grad": not isolate})
    spread_residuals(other.head)
    other_losses, _ = train_step(other, images())
    assert other_losses["loss_res_t1"].item() == pytest.approx(losses["loss_res_t1"].item(), rel=1e-6)


def test_residual_input_switch_changes_what_the_residuals_read():
    """residual_input="class": r_1 reads the class tower's output (16 channels here), so changing the
    objectness subnet leaves r_1 unchanged; "objectness": r_1 reads the 8-channel objectness feature."""
    feats = [torch.rand(1, 16, 4, 4) for _ in range(5)]
    for residual_input, in_channels in (("class", 16), ("objectness", 8)):
        torch.manual_seed(0)
        head = resobj_head(1, residual_input=residual_input, isolate_residual_grad=False)
        assert head.res_subnets[0][0].in_channels == in_channels
        before = head(feats)[3][0].clone()
        with torch.no_grad():
            head.obj_subnet[0].weight.mul_(3.0)
        after = head(feats)[3][0]
        if residual_input == "class":
            assert torch.equal(before, after)
        else:
            assert not torch.allclose(before, after)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_num_steps_sets_the_loss_terms(num_steps):
    model = tiny_resobj(num_steps)
    spread_residuals(model.head)
    batch = images(((0, 1), (2,)))
    raw = retina_raw(model, batch)
    losses, scalars = train_step(model, batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_obj"} | {f"loss_res_t{t}" for t in range(1, num_steps + 1)}
    _, l_res, _ = ref_cascade(raw["o0"], raw["residuals"], raw["labels"])
    norm = first_normalizer(raw["num_pos"])
    assert losses[f"loss_res_t{num_steps}"].item() == pytest.approx(l_res[-1].item() / norm, rel=1e-5)
    assert f"train/resobj/obj_pos_t{num_steps}" in scalars and f"train/resobj/obj_pos_t{num_steps + 1}" not in scalars


def test_all_empty_first_batch_gives_a_loss_of_normal_scale():
    """No positives in the first batch: the normaliser is 0.9 * 100 + 0.1 * 1 = 90.1 (not 1), so loss_obj is
    the negatives' BCE sum / 90.1, of the size of a batch with objects (the old start divided by 1)."""
    model = tiny_resobj(2)
    empty = images(((), ()))
    raw = retina_raw(model, empty)
    losses, scalars = train_step(model, empty)
    assert scalars["resobj/loss_normalizer"] == pytest.approx(90.1)
    valid = raw["labels"] >= 0
    assert losses["loss_obj"].item() == pytest.approx(bce_sum(raw["o0"][valid], raw["pos"][valid]).item() / 90.1, rel=1e-5)
    with_objects, _ = train_step(tiny_resobj(2), images(((0, 1), (2,))))
    assert 0.5 < losses["loss_obj"].item() / with_objects["loss_obj"].item() < 2.0


def test_normalizer_switches_reach_the_model_over_steps():
    """momentum 0.5, init 10: step 1 divides by 5 + 0.5 n1, step 2 by 0.5 * that + 0.5 n2."""
    model = tiny_resobj(1, loss_normalizer_momentum=0.5, loss_normalizer_init=10.0)
    first, second = images(((0, 1), (2,))), images(((1,), ()), seed=4)
    n1, n2 = retina_raw(model, first)["num_pos"], retina_raw(model, second)["num_pos"]
    assert n1 > 0 and n2 > 0
    _, s1 = train_step(model, first)
    _, s2 = train_step(model, second)
    v1 = 5.0 + 0.5 * n1
    assert s1["resobj/loss_normalizer"] == pytest.approx(v1)
    assert s2["resobj/loss_normalizer"] == pytest.approx(0.5 * v1 + 0.5 * n2)


# ---------------------------------------------------------------- constructor defaults = paper values


def test_retinanet_resobj_defaults():
    model = tiny_resobj(2)
    assert (model.cascade_mode, model.gate, model.test_objectness_step) == ("paper", "image", None)
    assert (model.test_score_thresh, model.test_nms_thresh) == (0.001, 0.45)  # Table 1b, RetinaNet-Obj's best
    assert (model.test_topk_candidates, model.max_detections_per_image) == (1000, 100)
    assert (model.box_reg_loss_type, model.smooth_l1_beta, model.vis_period, model.input_format) == ("smooth_l1", 0.0, 0, "BGR")
    assert (model.loss_normalizer.momentum, model.loss_normalizer.value, model.loss_normalizer.all_reduce) == (0.9, 100.0, True)
    head = resobj_head()
    assert (head.num_steps, head.residual_input, head.isolate_residual_grad) == (2, "objectness", True)
    assert torch.sigmoid(head.obj_score.bias).allclose(torch.tensor(0.01))
    assert torch.sigmoid(head.cls_score.bias).allclose(torch.tensor(1.0 / NUM_CLASSES))
    from detectron2.layers import ShapeSpec
    from resobj import ResObjHead

    wide = ResObjHead(input_shape=[ShapeSpec(channels=16)] * 5, num_classes=NUM_CLASSES, num_anchors=3, conv_dims=[16])
    assert wide.obj_score.in_channels == 128 and wide.num_steps == 2 and wide.cls_subnet[0].in_channels == 16


def test_retinanet_resobj_passes_its_options_to_retinanet():
    model = tiny_resobj(1, test_score_thresh=0.3, test_nms_thresh=0.6, test_topk_candidates=7,
                        max_detections_per_image=5, smooth_l1_beta=0.1, box_reg_loss_type="giou",
                        vis_period=9, input_format="RGB", test_objectness_step=0)
    assert (model.test_score_thresh, model.test_nms_thresh, model.test_topk_candidates) == (0.3, 0.6, 7)
    assert (model.max_detections_per_image, model.smooth_l1_beta, model.box_reg_loss_type) == (5, 0.1, "giou")
    assert (model.vis_period, model.input_format, model.test_objectness_step) == (9, "RGB", 0)


def test_box_loss_options_reach_the_box_loss():
    """box_reg_loss_type="giou" gives the GIoU loss on the positives / the normaliser."""
    model = tiny_resobj(1, box_reg_loss_type="giou")
    batch = images(((0, 1), (2,)))
    raw = retina_raw(model, batch)
    losses, _ = train_step(model, batch)
    _, box = ref_cls_box(model, raw)
    assert losses["loss_box_reg"].item() == pytest.approx(box.item() / first_normalizer(raw["num_pos"]), rel=1e-5)
    plain, _ = train_step(tiny_resobj(1), batch)
    assert losses["loss_box_reg"].item() != pytest.approx(plain["loss_box_reg"].item(), rel=1e-3)
    # smooth_l1_beta reaches the smooth-L1 box loss (detectron2's helper would default to beta 0)
    smooth = tiny_resobj(1, smooth_l1_beta=0.5)
    raw = retina_raw(smooth, batch)
    losses, _ = train_step(smooth, batch)
    _, box = ref_cls_box(smooth, raw)
    assert losses["loss_box_reg"].item() == pytest.approx(box.item() / first_normalizer(raw["num_pos"]), rel=1e-5)
    assert losses["loss_box_reg"].item() != pytest.approx(plain["loss_box_reg"].item(), rel=1e-3)


# ---------------------------------------------------------------- inference


@torch.no_grad()
def detections(model, batch):
    """forward_inference's Instances, before detector_postprocess (which drops boxes that clip to empty)."""
    model.eval()
    imgs = model.preprocess_image(batch)
    feats = model.backbone(imgs.tensor)
    feats = [feats[f] for f in model.head_in_features]
    return model.forward_inference(imgs, feats, model.head(feats))


@pytest.mark.parametrize("step", [0, 1, 2, None])
def test_inference_scores_use_the_chosen_step(step):
    """The top detection's score is max over anchors and classes of sigmoid(cls) * sigmoid(o_0 + r_1..r_step)
    (the best candidate always survives NMS); step None = T."""
    model = tiny_resobj(2, test_objectness_step=step)
    spread_residuals(model.head)
    batch = images()
    raw = retina_raw(model, batch)
    upto = 2 if step is None else step
    obj = raw["o0"] + sum(raw["residuals"][:upto], torch.zeros_like(raw["o0"]))
    fused = torch.sigmoid(raw["logits"]) * torch.sigmoid(obj)[..., None]
    out = detections(model, batch)
    for i in range(2):
        assert out[i].scores.max().item() == pytest.approx(fused[i].max().item(), rel=1e-5)


def test_score_threshold_reaches_inference():
    """With the threshold at the median fused score, every kept score is above it and some are dropped."""
    model = tiny_resobj(1)
    batch = images()
    raw = retina_raw(model, batch)
    fused = torch.sigmoid(raw["logits"]) * torch.sigmoid(raw["o0"] + raw["residuals"][0])[..., None]
    thresh = fused[0].median().item()
    model.max_detections_per_image = 100_000
    model.test_topk_candidates = 100_000
    model.test_nms_thresh = 1.0  # NMS keeps everything
    kept = detections(model, batch)[0]
    model.test_score_thresh = thresh
    above = detections(model, batch)[0]
    assert len(above) == int((fused[0] > thresh).sum()) < len(kept)
    assert above.scores.min().item() > thresh


# ---------------------------------------------------------------- ResObj RPN


@torch.no_grad()
def rpn_raw(model, batch):
    rpn = model.proposal_generator
    feats = model.backbone(model.preprocess_image(batch).tensor)
    feats = [feats[f] for f in rpn.in_features]
    obj, _, *res = rpn.rpn_head(feats)
    flat = lambda xs: torch.cat([x.permute(0, 2, 3, 1).flatten(1) for x in xs], dim=1)  # noqa: E731
    anchors = rpn.anchor_generator(feats)
    labels, _ = rpn.label_and_sample_anchors(anchors, [b["instances"] for b in batch])
    return flat(obj), [flat(r) for r in res], torch.stack(labels)


def spread_rpn(model, std=0.5, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for score in model.proposal_generator.rpn_head.res_scores:
            score.weight.copy_(torch.randn(score.weight.shape, generator=g) * std)
            score.bias.copy_(torch.randn(score.bias.shape, generator=g))
    return model


@pytest.mark.parametrize("gate", ["image", "batch"])
def test_rpn_losses_match_independent_cascade(gate):
    """loss_rpn_cls = L_obj / (256 N), loss_rpn_res_t{t} = L_t / (256 N) (detectron2's RPN normaliser)."""
    model = spread_rpn(tiny_faster_rcnn(2, gate=gate))
    batch = images(((0, 1), (2,)))
    o0, res, labels = rpn_raw(model, batch)
    losses, scalars = train_step(model, batch)
    l_obj, l_res, _ = ref_cascade(o0, res, labels, gate)
    assert scalars["rpn_resobj/loss_normalizer"] == 512
    assert losses["loss_rpn_cls"].item() == pytest.approx(l_obj.item() / 512, rel=1e-5)
    for t in (1, 2):
        assert losses[f"loss_rpn_res_t{t}"].item() == pytest.approx(l_res[t - 1].item() / 512, rel=1e-5)
    assert "train/rpn_resobj/gated_t2" in scalars


def test_rpn_gate_switch_changes_the_residual_losses():
    batch = images(((0, 1), (2,)))
    per_image, _ = train_step(spread_rpn(tiny_faster_rcnn(2, gate="image")), batch)
    per_batch, _ = train_step(spread_rpn(tiny_faster_rcnn(2, gate="batch")), batch)
    assert per_batch["loss_rpn_res_t1"].item() != pytest.approx(per_image["loss_rpn_res_t1"].item(), rel=1e-3)


def test_rpn_num_pos_normalizer_and_loss_weights():
    """"num_pos": / (0.5 * 10 + 0.5 n) with momentum 0.5, init 10; loss_weight scales the objectness and
    residual terms by loss_rpn_cls's weight and the box term by its own."""
    model = spread_rpn(tiny_faster_rcnn(1, loss_normalizer="num_pos", loss_normalizer_momentum=0.5,
                                        loss_normalizer_init=10.0,
                                        loss_weight={"loss_rpn_cls": 2.0, "loss_rpn_loc": 3.0}))
    base = spread_rpn(tiny_faster_rcnn(1))
    batch = images(((0, 1), (2,)))
    o0, res, labels = rpn_raw(model, batch)
    n = int((labels == 1).sum())
    losses, scalars = train_step(model, batch)
    plain, _ = train_step(base, batch)
    norm = 5.0 + 0.5 * n
    assert scalars["rpn_resobj/loss_normalizer"] == pytest.approx(norm)
    l_obj, l_res, _ = ref_cascade(o0, res, labels)
    assert losses["loss_rpn_cls"].item() == pytest.approx(2.0 * l_obj.item() / norm, rel=1e-5)
    assert losses["loss_rpn_res_t1"].item() == pytest.approx(2.0 * l_res[0].item() / norm, rel=1e-5)
    assert losses["loss_rpn_loc"].item() == pytest.approx(3.0 * plain["loss_rpn_loc"].item() * 512 / norm, rel=1e-5)
    assert model.proposal_generator.num_pos_normalizer.all_reduce is True
    assert tiny_faster_rcnn(1, num_pos_all_reduce=False).proposal_generator.num_pos_normalizer.all_reduce is False


def test_rpn_box_loss_options_reach_the_box_loss():
    """smooth_l1_beta and box_reg_loss_type reach the ResObj RPN's box loss: beta 0.5 or GIoU change
    loss_rpn_loc of the same weights and batch (detectron2's helper defaults to smooth-L1 with beta 0);
    the objectness loss stays."""
    batch = images(((0, 1), (2,)))
    plain, _ = train_step(spread_rpn(tiny_faster_rcnn(1)), batch)
    for options in ({"smooth_l1_beta": 0.5}, {"box_reg_loss_type": "giou"}):
        changed, _ = train_step(spread_rpn(tiny_faster_rcnn(1, **options)), batch)
        assert changed["loss_rpn_loc"].item() != pytest.approx(plain["loss_rpn_loc"].item(), rel=1e-3), options
        assert changed["loss_rpn_cls"].item() == pytest.approx(plain["loss_rpn_cls"].item(), rel=1e-6), options


def test_rpn_loss_weight_without_the_objectness_key_keeps_weight_1():
    """A loss_weight dict naming only loss_rpn_loc leaves the objectness and residual terms at weight 1,
    as detectron2's RPN does for keys it lacks."""
    batch = images(((0, 1), (2,)))
    plain, _ = train_step(spread_rpn(tiny_faster_rcnn(1)), batch)
    weighted, _ = train_step(spread_rpn(tiny_faster_rcnn(1, loss_weight={"loss_rpn_loc": 3.0})), batch)
    for k in ("loss_rpn_cls", "loss_rpn_res_t1"):
        assert weighted[k].item() == pytest.approx(plain[k].item(), rel=1e-6), k
    assert weighted["loss_rpn_loc"].item() == pytest.approx(3.0 * plain["loss_rpn_loc"].item(), rel=1e-6)


def test_rpn_official_mode_loss():
    from resobj import ResObjRPNHead

    head = ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=1, residual_conv_dim=8, isolate_residual_grad=False)
    model = spread_rpn(tiny_faster_rcnn(head=head, cascade_mode="official"))
    batch = images(((0, 1), (2,)))
    o0, res, labels = rpn_raw(model, batch)
    losses, _ = train_step(model, batch)
    valid = labels >= 0
    ref = bce_sum((o0 + res[0])[valid], (labels == 1)[valid])
    assert not any(k.startswith("loss_rpn_res") for k in losses)
    assert losses["loss_rpn_cls"].item() == pytest.approx(ref.item() / 512, rel=1e-5)


@pytest.mark.parametrize("isolate", [True, False])
def test_rpn_isolate_residual_grad(isolate):
    from detectron2.utils.events import EventStorage
    from resobj import ResObjRPNHead

    head = ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=1, residual_conv_dim=8, isolate_residual_grad=isolate)
    model = spread_rpn(tiny_faster_rcnn(head=head))
    model.train()
    with EventStorage():
        losses = model(images())
    losses["loss_rpn_res_t1"].backward()
    for module in (head.conv, head.objectness_logits):
        grad = module.weight.grad
        if isolate:
            assert grad is None or grad.abs().sum() == 0
        else:
            assert grad is not None and grad.abs().sum() > 0


def test_rpn_passes_its_options_to_rpn():
    rpn = tiny_faster_rcnn(1, nms_thresh=0.6, min_box_size=2.0, anchor_boundary_thresh=0.0, smooth_l1_beta=0.1,
                           box_reg_loss_type="giou", batch_size_per_image=64, positive_fraction=0.25,
                           loss_weight=2.0).proposal_generator
    assert (rpn.nms_thresh, rpn.min_box_size, rpn.anchor_boundary_thresh, rpn.smooth_l1_beta) == (0.6, 2.0, 0.0, 0.1)
    assert (rpn.box_reg_loss_type, rpn.batch_size_per_image, rpn.positive_fraction) == ("giou", 64, 0.25)
    assert rpn.loss_weight == {"loss_rpn_cls": 2.0, "loss_rpn_loc": 2.0}
    assert (rpn.pre_nms_topk[True], rpn.post_nms_topk[False]) == (200, 50)


def test_rpn_defaults_and_priors():
    from resobj import ResObjRPNHead

    rpn = tiny_faster_rcnn(2).proposal_generator
    assert (rpn.cascade_mode, rpn.gate, rpn.loss_normalizer) == ("paper", "image", "batch_size")
    assert (rpn.batch_size_per_image, rpn.positive_fraction, rpn.nms_thresh) == (256, 0.5, 0.7)
    assert (rpn.min_box_size, rpn.anchor_boundary_thresh, rpn.smooth_l1_beta) == (0.0, -1.0, 0.0)
    assert rpn.loss_weight == {"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0} and rpn.box_reg_loss_type == "smooth_l1"
    ema = rpn.num_pos_normalizer
    assert (ema.momentum, ema.value, ema.all_reduce) == (0.9, 100.0, True)
    head = ResObjRPNHead(in_channels=16, num_anchors=3)
    assert head.num_steps == 2 and head.isolate_residual_grad is True
    assert head.res_subnets[0][0].out_channels == 256 and head.res_scores[0].in_channels == 256
    assert torch.sigmoid(head.objectness_logits.bias).allclose(torch.tensor(0.01))
    assert head.res_scores[1].bias.abs().sum() == 0 and 0 < head.res_scores[1].weight.std() < 0.02
    assert 0 < head.res_subnets[1][0].weight.std() < 0.02 and head.res_subnets[1][0].bias.abs().sum() == 0
    primed = ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=1, residual_prior=0.001, objectness_prior=0.2)
    assert torch.sigmoid(primed.res_scores[0].bias).allclose(torch.tensor(0.001))
    assert torch.sigmoid(primed.objectness_logits.bias).allclose(torch.tensor(0.2))
    with pytest.raises(ValueError, match="num_steps=-1"):
        ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=-1)
    assert len(ResObjRPNHead(in_channels=16, num_anchors=3, num_steps=0).res_scores) == 0


def test_rpn_head_passes_its_layout_to_the_standard_head():
    """conv_dims and box_dim reach StandardRPNHead; the residual subnets read the last hidden conv (8)."""
    from resobj import ResObjRPNHead

    head = ResObjRPNHead(in_channels=16, num_anchors=3, box_dim=5, conv_dims=[8, 8], num_steps=1, residual_conv_dim=4)
    assert head.anchor_deltas.out_channels == 15 and head.objectness_logits.in_channels == 8
    assert len(head.conv) == 2 and head.res_subnets[0][0].in_channels == 8
    obj, deltas, res = head([torch.rand(1, 16, 4, 4)])
    assert deltas[0].shape == (1, 15, 4, 4) and res[0].shape == obj[0].shape == (1, 3, 4, 4)


def test_rpn_inference_ranks_by_the_final_step():
    """Eval mode, no losses; T=2: the proposals' objectness_logits are o_0 + r_1 + r_2 of the kept anchors."""
    model = spread_rpn(tiny_faster_rcnn(2, nms_thresh=1.0))
    rpn = model.proposal_generator
    rpn.pre_nms_topk[False] = 100_000
    rpn.post_nms_topk[False] = 20
    rpn.min_box_size = -1.0
    model.eval()
    batch = images()
    o0, res, _ = rpn_raw(model, batch)
    with torch.no_grad():
        feats = model.backbone(model.preprocess_image(batch).tensor)
        proposals, losses = rpn(model.preprocess_image(batch), feats)
    assert losses == {}
    final = o0 + res[0] + res[1]
    for i, p in enumerate(proposals):
        assert torch.allclose(p.objectness_logits, final[i].sort(descending=True).values[:20], atol=1e-5)


# ---------------------------------------------------------------- PositiveCountNormalizer


def test_ema_hand_computed():
    """init 100, m 0.9, counts 0, 20, 50: 0.9*100 + 0.1*max(0,1) = 90.1; 0.9*90.1 + 2 = 83.09;
    0.9*83.09 + 5 = 79.781. m 0: max(count, 1) = 1, 20, 50. init 10, m 0.5, counts 4, 0: 7, 4."""
    from resobj.loss import PositiveCountNormalizer

    ema = PositiveCountNormalizer()
    assert [round(ema(torch.tensor(c)), 6) for c in (0, 20, 50)] == [90.1, 83.09, 79.781]
    plain = PositiveCountNormalizer(momentum=0.0)
    assert [plain(torch.tensor(c)) for c in (0, 20, 50)] == [1.0, 20.0, 50.0]
    small = PositiveCountNormalizer(momentum=0.5, initial=10.0)
    assert [small(torch.tensor(c)) for c in (4, 0)] == [7.0, 4.0]
    tiny = PositiveCountNormalizer(momentum=0.5, initial=0.5)  # any initial > 0, also below 1: 0.25 + 1.5
    assert tiny(torch.tensor(3)) == 1.75
    for bad, match in (({"momentum": 1.0}, "momentum=1.0"), ({"momentum": -0.1}, "momentum=-0.1"),
                       ({"initial": 0.0}, "initial value 0.0")):
        with pytest.raises(ValueError, match=match):
            PositiveCountNormalizer(**bad)


def test_ema_all_reduce_averages_over_workers(monkeypatch):
    """Two workers, the other one with 6 positives: (4 + 6) / 2 = 5 enters the EMA (0.9*100 + 0.5 = 90.5);
    without all-reduce the worker's own 4 does (90.4). The caller's count tensor is not modified."""
    from resobj import loss as loss_module

    monkeypatch.setattr(loss_module.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.add_(6.0))
    count = torch.tensor(4.0)
    assert loss_module.PositiveCountNormalizer()(count) == pytest.approx(90.5)
    assert count.item() == 4.0
    assert loss_module.PositiveCountNormalizer(all_reduce=False)(count) == pytest.approx(90.4)
    monkeypatch.setattr(loss_module.comm, "get_world_size", lambda: 1)
    assert loss_module.PositiveCountNormalizer()(count) == pytest.approx(90.4)  # one worker: nothing to reduce
    # A float count that requires grad still gives a plain float: the normaliser is never in the graph.
    monkeypatch.setattr(loss_module.comm, "get_world_size", lambda: 2)
    graded = torch.tensor(4.0, requires_grad=True)
    value = loss_module.PositiveCountNormalizer()(graded)
    assert type(value) is float and value == pytest.approx(90.5)


def test_prior_bias_hand_computed():
    from resobj.head import prior_bias

    assert prior_bias(0.25) == pytest.approx(-math.log(3.0))
    assert prior_bias(0.5) == 0.0
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="must be in"):
            prior_bias(bad)
    head = resobj_head(1, objectness_prior=0.25, class_prior=0.1, residual_prior=0.75)
    assert head.obj_score.bias[0].item() == pytest.approx(-math.log(3.0), rel=1e-6)
    assert torch.sigmoid(head.cls_score.bias).allclose(torch.tensor(0.1))
    assert head.res_scores[0].bias[0].item() == pytest.approx(math.log(3.0), rel=1e-6)
    for conv in (head.obj_subnet[0], head.res_subnets[0][0], head.res_scores[0]):
        assert 0 < conv.weight.std().item() < 0.02  # N(0, 0.01) init
    assert head.obj_subnet[0].bias.abs().sum() == 0 and head.res_subnets[0][0].bias.abs().sum() == 0


# Mutation survivors, explained (python ../shared/tools/mutate.py --tests "tests/test_resobj_cascade.py
# tests/test_resobj_losses.py tests/test_resobj_models.py tests/test_resobj_configs.py" resobj/loss.py):
# - loss.py `num_pos.detach()` dropped in PositiveCountNormalizer.__call__: the count leaves the graph by
#   `.item()` (a Python float) either way, and callers pass integer counts, which cannot require grad;
#   the detach only keeps the clone/all_reduce of the distributed path off autograd. Same values.
