"""RetinaNetGHM on a tiny model (CPU, seconds): its losses against an independent loop-over-regions
computation, every constructor switch reaching the model and changing the loss, images without objects.

The reference (:func:`ref_ghm`) is the authors' GHMC / GHMR algorithm written as a loop over the regions
with explicit edges (the paper's text in ``mode="paper"``), on the raw head outputs, sharing no code with
ghm.ghm_loss or ghm.meta_arch.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from tiny_retinanet import tiny_retinanet_parts, train_step

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 3


def tiny_ghm(**kwargs):
    """RetinaNetGHM on :func:`tiny_retinanet_parts` (3 classes, RetinaNet's prior 0.01)."""
    from ghm import RetinaNetGHM

    return RetinaNetGHM(**tiny_retinanet_parts(NUM_CLASSES), **kwargs)


def images(boxes_per_image=((0, 2), (1,)), seed=0, size=(200, 250)):
    """Random images; boxes_per_image gives each image's GT classes (an empty tuple = no object)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for classes in boxes_per_image:
        h, w = size
        inst = Instances((h, w))
        xy = torch.rand(len(classes), 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = 30 + torch.rand(len(classes), 2, generator=g) * 80
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.tensor(classes, dtype=torch.long)
        batch.append({"image": torch.rand(3, h, w, generator=g) * 255, "instances": inst, "height": h, "width": w})
    return batch


@torch.no_grad()
def raw(model, batch):
    """Head outputs flattened to detectron2's anchor order, labels and box targets, outside model.losses."""
    from detectron2.structures import Boxes

    imgs = model.preprocess_image(batch)
    feats = model.backbone(imgs.tensor)
    feats = [feats[f] for f in model.head_in_features]
    logits, deltas = model.head(feats)

    def flat(x, dim):  # (N, A*dim, H, W) -> (N, H*W*A, dim)
        n, _, h, w = x.shape
        return x.view(n, -1, dim, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, dim)

    anchors = model.anchor_generator(feats)
    gt_labels, gt_boxes = model.label_anchors(anchors, [b["instances"] for b in batch])
    labels = torch.stack(gt_labels)
    all_anchors = Boxes.cat(anchors).tensor
    target_deltas = torch.stack([model.box2box_transform.get_deltas(all_anchors, b) for b in gt_boxes])
    return dict(
        logits=torch.cat([flat(x, NUM_CLASSES) for x in logits], 1), deltas=torch.cat([flat(x, 4) for x in deltas], 1),
        sizes=[flat(x, 4).shape[1] for x in deltas], labels=labels, target_deltas=target_deltas, anchors=anchors,
        gt_boxes=gt_boxes,
    )


def ref_ghm(g, loss_el, bins, momentum, acc, mode, last_edge):
    """(1/N sum beta_i loss_i, beta) over the elements of g (all valid), the region loop of the authors' code.

    acc: the list of S_j, updated in place. mode "official": only non-empty regions are updated and GD uses
    the number n of non-empty regions; "paper": every region is updated and GD uses M."""
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] = last_edge
    tot = max(g.numel(), 1)
    weights = torch.zeros_like(g)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1])
        num = inds.sum().item()
        if momentum > 0 and (num > 0 or mode == "paper"):
            acc[i] = momentum * acc[i] + (1 - momentum) * num
        if num > 0:
            n += 1
            weights[inds] = tot / (acc[i] if momentum > 0 else num)
    weights = weights / (n if mode == "official" else bins) if n else weights
    return (loss_el * weights).sum() / tot, weights


def ref_losses(r, mode, c_acc, r_acc, c_bins=30, c_momentum=0.75, r_bins=10, r_momentum=0.7, mu=0.02):
    """GHM-C, GHM-R and the mean beta of the positive elements of GHM-C, from the raw outputs: one group of
    all anchors ("paper") or one group per level ("official")."""
    labels, logits, deltas, target = r["labels"], r["logits"], r["deltas"], r["target_deltas"]
    bounds = [0]
    for s in r["sizes"]:
        bounds.append(bounds[-1] + s)
    groups = [(0, bounds[-1])] if mode == "paper" else list(zip(bounds[:-1], bounds[1:]))
    loss_c, loss_r, pos_beta = 0.0, 0.0, []
    for start, end in groups:
        lab = labels[:, start:end]
        valid = lab >= 0
        x = logits[:, start:end][valid].flatten()
        y = F.one_hot(lab[valid], NUM_CLASSES + 1)[:, :-1].float().flatten()
        g = (torch.sigmoid(x) - y).abs()
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        group_loss, beta = ref_ghm(g, bce, c_bins, c_momentum, c_acc, mode, 1 + 1e-6)
        loss_c = loss_c + group_loss
        pos_beta.append(beta[y == 1])
        pos = valid & (lab < NUM_CLASSES)
        d = (deltas[:, start:end][pos] - target[:, start:end][pos]).flatten()
        loss_r = loss_r + ref_ghm(d.abs() / torch.sqrt(d * d + mu * mu), torch.sqrt(d * d + mu * mu) - mu,
                                  r_bins, r_momentum, r_acc, mode, 1e3)[0]
    return loss_c, loss_r, torch.cat(pos_beta).mean().item()


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_losses_match_the_region_loop_over_two_steps(mode):
    """Two training steps on the same batch (no optimizer step, so the same outputs): the second uses the
    EMA left by the first. loss_cls = GHM-C, loss_box_reg = 10 x GHM-R; the EMA buffers hold the S_j."""
    model = tiny_ghm(ghm_mode=mode)
    batch = images()
    r = raw(model, batch)
    c_acc, r_acc = [0.0] * 30, [0.0] * 10
    for _ in range(2):
        losses, scalars = train_step(model, batch)
        ref_c, ref_r, pos_beta = ref_losses(r, mode, c_acc, r_acc)
        assert losses["loss_cls"].item() == pytest.approx(float(ref_c), rel=1e-5)
        assert scalars["ghm/cls_weight_pos"] == pytest.approx(pos_beta, rel=1e-5)
        assert losses["loss_box_reg"].item() == pytest.approx(10 * float(ref_r), rel=1e-5)
        assert model.ghm_c_density.acc_sum.tolist() == pytest.approx(c_acc, rel=1e-5, abs=1e-6)
        assert model.ghm_r_density.acc_sum.tolist() == pytest.approx(r_acc, rel=1e-5, abs=1e-6)
    assert ref_r > 0 and ref_c > 0
    if mode == "paper":
        # Signals of step 2: share of region 1 and its beta = N / (S_1 * M) (N = valid anchors x K).
        valid = (r["labels"] >= 0).sum().item() * NUM_CLASSES
        g = (torch.sigmoid(r["logits"]) - F.one_hot(r["labels"].clamp(min=0), NUM_CLASSES + 1)[..., :-1]).abs()
        first = ((g < 1 / 30) & (r["labels"] >= 0)[..., None]).sum().item()
        assert scalars["ghm/cls_frac_lowest_bin"] == pytest.approx(first / valid, rel=1e-6)
        assert scalars["ghm/cls_weight_lowest_bin"] == pytest.approx(valid / (c_acc[0] * 30), rel=1e-5)
        assert scalars["num_pos_anchors"] == (r["labels"].ge(0) & r["labels"].lt(NUM_CLASSES)).sum().item() / 2


def test_ignored_anchors_are_not_counted():
    """With alpha = 0.5 (paper mode) the first step leaves S = 0.5 R: sum S = 0.5 N, N = (anchors with label
    >= 0) x K; the ignored anchors (label -1, IoU in [0.4, 0.5)) are not in N. GHM-R counts 4 coordinates
    per positive anchor."""
    model = tiny_ghm(ghm_c_momentum=0.5, ghm_r_momentum=0.5)
    batch = images()
    labels = raw(model, batch)["labels"]
    assert (labels == -1).any()
    train_step(model, batch)
    assert model.ghm_c_density.acc_sum.sum().item() == pytest.approx(0.5 * (labels >= 0).sum().item() * NUM_CLASSES)
    num_pos = ((labels >= 0) & (labels < NUM_CLASSES)).sum().item()
    assert model.ghm_r_density.acc_sum.sum().item() == pytest.approx(0.5 * 4 * num_pos)


@pytest.mark.parametrize("box_loss", ["ghm_r", "smooth_l1"])
def test_image_without_objects_gives_finite_losses_and_gradients(box_loss):
    """One image without objects beside one with, and a batch with none: finite losses and gradients; with
    no positive anchor the box loss is exactly 0 and no box / positive-weight signal is logged (no NaN)."""
    for boxes in (((), (1,)), ((), ())):
        model = tiny_ghm(box_loss=box_loss)
        losses, scalars = train_step(model, images(boxes))
        assert all(torch.isfinite(v) for v in losses.values()), losses
        assert all(math.isfinite(v) for v in scalars.values()), scalars
        for p in model.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()
        assert losses["loss_cls"].item() > 0
        if boxes == ((), ()):
            assert losses["loss_box_reg"].item() == 0.0
            if box_loss == "smooth_l1":  # RetinaNet's EMA: 0.9 * 100 + 0.1 * max(0, 1)
                assert scalars["ghm/loss_normalizer"] == pytest.approx(90.1)
            assert not any(k.startswith("ghm/box_") for k in scalars) and "ghm/cls_weight_pos" not in scalars
            assert model.head.cls_score.weight.grad.abs().sum() > 0  # background still trains the classifier
        elif box_loss == "ghm_r":
            assert "ghm/box_nonempty_bins" in scalars and "ghm/cls_weight_pos" in scalars


def test_box_loss_switch_selects_the_loss():
    """smooth_l1: detectron2's L1 (smooth_l1_beta 0) over positives / (0.9 * 100 + 0.1 * P), the first value
    of RetinaNet's EMA; asl1: sum of ASL1 over the positives' coordinates / the same; ghm_r: 10 x GHM-R. The
    classification loss is the same GHM-C in all three."""
    batch = images()
    r = raw(tiny_ghm(), batch)
    pos = (r["labels"] >= 0) & (r["labels"] < NUM_CLASSES)
    d = r["deltas"][pos] - r["target_deltas"][pos]
    norm = 0.9 * 100 + 0.1 * pos.sum().item()
    out = {name: train_step(tiny_ghm(box_loss=name), batch)[0] for name in ("smooth_l1", "asl1", "ghm_r")}
    assert out["smooth_l1"]["loss_box_reg"].item() == pytest.approx(d.abs().sum().item() / norm, rel=1e-5)
    asl1 = (torch.sqrt(d * d + 0.02**2) - 0.02).sum().item()
    assert out["asl1"]["loss_box_reg"].item() == pytest.approx(asl1 / norm, rel=1e-5)
    _, ref_r, _ = ref_losses(r, "paper", [0.0] * 30, [0.0] * 10)
    assert out["ghm_r"]["loss_box_reg"].item() == pytest.approx(10 * float(ref_r), rel=1e-5)
    assert out["smooth_l1"]["loss_cls"].item() == out["asl1"]["loss_cls"].item() == out["ghm_r"]["loss_cls"].item()
    # "smooth_l1" is RetinaNet's own box loss: its smooth_l1_beta and box_reg_loss_type reach it.
    beta, _ = train_step(tiny_ghm(box_loss="smooth_l1", smooth_l1_beta=0.5), batch)
    huber = F.smooth_l1_loss(d, torch.zeros_like(d), beta=0.5, reduction="sum").item()
    assert beta["loss_box_reg"].item() == pytest.approx(huber / norm, rel=1e-5)
    giou, _ = train_step(tiny_ghm(box_loss="smooth_l1", box_reg_loss_type="giou"), batch)
    assert abs(giou["loss_box_reg"].item() - out["smooth_l1"]["loss_box_reg"].item()) > 1e-3


def test_switches_reach_the_model_and_change_the_loss():
    """Each argument is stored where the loss reads it and changes loss_cls / loss_box_reg as predicted:
    momentum alpha on the first step divides by 1 - alpha (0.75 -> x4, 0.7 -> x1/0.3), loss weights scale,
    bins and mu change the value (each checked against the region loop)."""
    batch = images()
    base = tiny_ghm(ghm_c_momentum=0.0, ghm_r_momentum=0.0, ghm_r_loss_weight=1.0)
    r = raw(base, batch)
    ref0 = ref_losses(r, "paper", [0.0] * 30, [0.0] * 10, c_momentum=0.0, r_momentum=0.0)[:2]
    l0, _ = train_step(base, batch)
    assert l0["loss_cls"].item() == pytest.approx(float(ref0[0]), rel=1e-5)
    assert l0["loss_box_reg"].item() == pytest.approx(float(ref0[1]), rel=1e-5)

    smoothed, _ = train_step(tiny_ghm(ghm_r_loss_weight=1.0), batch)  # alpha 0.75 and 0.7
    assert smoothed["loss_cls"].item() == pytest.approx(l0["loss_cls"].item() / 0.25, rel=1e-5)
    assert smoothed["loss_box_reg"].item() == pytest.approx(l0["loss_box_reg"].item() / 0.3, rel=1e-5)

    weighted, _ = train_step(tiny_ghm(ghm_c_momentum=0.0, ghm_r_momentum=0.0, ghm_c_loss_weight=0.5,
                                      ghm_r_loss_weight=3.0), batch)
    assert weighted["loss_cls"].item() == pytest.approx(0.5 * l0["loss_cls"].item(), rel=1e-6)
    assert weighted["loss_box_reg"].item() == pytest.approx(3.0 * l0["loss_box_reg"].item(), rel=1e-6)

    changed = tiny_ghm(ghm_c_momentum=0.0, ghm_r_momentum=0.0, ghm_r_loss_weight=1.0, ghm_c_bins=10, ghm_r_bins=4,
                       ghm_r_mu=0.1)
    assert (changed.ghm_c_density.bins, changed.ghm_r_density.bins, changed.ghm_r_mu) == (10, 4, 0.1)
    lc, _ = train_step(changed, batch)
    ref = ref_losses(r, "paper", [0.0] * 10, [0.0] * 4, c_bins=10, c_momentum=0.0, r_bins=4, r_momentum=0.0, mu=0.1)[:2]
    assert lc["loss_cls"].item() == pytest.approx(float(ref[0]), rel=1e-5)
    assert lc["loss_box_reg"].item() == pytest.approx(float(ref[1]), rel=1e-5)
    assert abs(lc["loss_cls"].item() - l0["loss_cls"].item()) > 1e-3 * l0["loss_cls"].item()
    assert abs(lc["loss_box_reg"].item() - l0["loss_box_reg"].item()) > 1e-3 * l0["loss_box_reg"].item()

    paper, official = tiny_ghm(), tiny_ghm(ghm_mode="official", ghm_all_reduce=True)
    assert (official.ghm_c_density.mode, official.ghm_r_density.mode) == ("official", "official")
    assert official.ghm_c_density.all_reduce and official.ghm_r_density.all_reduce
    assert not paper.ghm_c_density.all_reduce and paper.ghm_c_density.momentum == 0.75
    assert paper.ghm_r_density.momentum == 0.7
    lp, lo = train_step(paper, batch)[0], train_step(official, batch)[0]
    assert lo["loss_cls"].item() > 2 * lp["loss_cls"].item()  # five level losses summed, GD with n <= M


def test_invalid_arguments_raise():
    for kwargs, match in (({"focal_loss_alpha": 0.25}, "model.focal_loss_alpha"),
                          ({"box_loss": "giou"}, "box_loss='giou'"), ({"ghm_mode": "mmdet"}, "ghm_mode='mmdet'"),
                          ({"ghm_r_mu": 0.0}, "ghm_r_mu=0.0"), ({"ghm_c_momentum": 1.0}, "momentum=1.0")):
        with pytest.raises(ValueError, match=match):
            tiny_ghm(**kwargs)


def test_ema_is_checkpointed_and_hyperparameters_are_declared():
    from d2imbalance.analysis.hyperparameters import declared_hyperparameters
    from ghm import HYPERPARAMETERS, RetinaNetGHM

    model = tiny_ghm()
    train_step(model, images())
    state = model.state_dict()
    assert torch.equal(state["ghm_c_density.acc_sum"], model.ghm_c_density.acc_sum)
    assert state["ghm_c_density.acc_sum"].sum() > 0 and state["ghm_r_density.acc_sum"].sum() > 0
    fresh = tiny_ghm()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.ghm_r_density.acc_sum, model.ghm_r_density.acc_sum)
    assert declared_hyperparameters(RetinaNetGHM) == HYPERPARAMETERS
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
